/// <reference types="node" preserve="true" />
// Its types use fetch's, which a Node project has from @types/node: see src/index.ts.
export { WebhookEndpointsClient, type WebhookEndpointsClientOptions } from './webhook-endpoints-client';
export { MitpoApiError } from './mitpo-api-error';
export {
  webhookEndpointSchema,
  createdWebhookEndpointSchema,
  type WebhookEndpoint,
  type CreatedWebhookEndpoint,
  type CreateWebhookEndpointInput,
} from './schemas';
