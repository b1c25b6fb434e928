// mitpo-webhooks/web: the receiver for Web runtimes. Nothing reachable from here
// imports a `node:` module or a Node built-in (test/unit/web-bundle.test.ts).
export { MitpoWebhooks, type WebMitpoWebhooksOptions } from './mitpo-webhooks';
export { sign } from './sign';
export { verifySignature } from './verify-signature';
export type { WebhookLogger } from '../options';
export type { FetchHandler } from '../adapters/fetch-handler';
export type { DeliveryInput } from '../delivery-input';
export type { WebhookResponse, WebhookResponseBody } from '../answers';
// The core's types: their bytes default to `Uint8Array`, what a Web runtime reads.
export type { DeliveryContext, EventHandler, AnyEventHandler, HandlerErrorHandler } from '../router/types';
export type { FailureContext, FailureHandler } from '../pipeline/failure-report';
export type { DeliveryKeyFunction } from '../options';
export type { StaleHandler } from '../ordering/stale-events';
export type { SecretOption, Secrets } from '../secrets/secret-source';
export { WebhookVerificationError, type WebhookErrorCode } from '../errors';
export { parseEvent } from '../events/parse-event';
export {
  mitpoEventSchema,
  mitpoEventSchemas,
  unknownMitpoEventSchema,
  dispatchDataSchema,
  connectionDataSchema,
  eventTimestampSchema,
  MITPO_EVENT_NAMES,
  type MitpoEvent,
  type MitpoEventName,
  type MitpoEventOf,
  type UnknownMitpoEvent,
} from '../events/schemas';
export { MemoryReplayStore, type MemoryReplayStoreOptions } from '../replay/memory-replay-store';
export type { ReplayStore, ClaimResult, OrderedClaimResult } from '../replay/replay-store';
export type { OrderingOption, EventOrder, EventPosition } from '../ordering/event-order';
