import { z } from 'zod';
import { MITPO_EVENT_NAMES, type MitpoEventName } from '../events/schemas';

/** A registered webhook endpoint, as `GET /v1/webhooks` lists it. */
export const webhookEndpointSchema = z.looseObject({
  id: z.string(),
  url: z.string(),
  events: z.array(z.string()),
  created_at: z.string(),
});

/** What `POST /v1/webhooks` answers: the endpoint and, this once, its signing secret. */
export const createdWebhookEndpointSchema = webhookEndpointSchema.extend({ signing_secret: z.string().min(1) });

export const deletedWebhookEndpointSchema = z.looseObject({ id: z.string(), deleted: z.literal(true) });

/** MITPO's API envelope around `data`. */
export function apiEnvelope<D extends z.ZodType>(data: D) {
  return z.looseObject({ success: z.literal(true), data, request_id: z.string().optional() });
}

export const createWebhookEndpointInputSchema = z.object({
  url: z.url({ protocol: /^https$/, error: 'url must be an https:// URL (MITPO delivers webhooks over HTTPS only)' }),
  events: z
    .array(z.enum(MITPO_EVENT_NAMES as [MitpoEventName, ...MitpoEventName[]], { error: `each event must be one of ${MITPO_EVENT_NAMES.join(', ')}` }))
    .min(1, { error: 'events must name at least one event type' }),
});

/** A registered webhook endpoint: `id`, `url`, `events`, `created_at`, and whatever else MITPO sends. */
export type WebhookEndpoint = z.infer<typeof webhookEndpointSchema>;
/** A new endpoint, with the `signing_secret` MITPO shows only this once. */
export type CreatedWebhookEndpoint = z.infer<typeof createdWebhookEndpointSchema>;
/** What `create()` takes: an `https://` `url`, and at least one of MITPO's event names. */
export type CreateWebhookEndpointInput = z.infer<typeof createWebhookEndpointInputSchema>;
