/// <reference types="node" preserve="true" />
// Its types use Node's: see src/index.ts.
import { fastifyMitpoWebhooks } from './fastify-mitpo-webhooks';

export { fastifyMitpoWebhooks, type FastifyMitpoWebhooksOptions } from './fastify-mitpo-webhooks';
export default fastifyMitpoWebhooks;
