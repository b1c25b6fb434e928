/// <reference types="node" preserve="true" />
// Its types use Node's (Buffer, node:http, fetch's Request and Headers), and TypeScript 6
// puts @types/node in a program only when asked: this entry asks, so apps need not.
export { MitpoWebhooks } from './mitpo-webhooks';
export type { WebhookLogger } from './options';
export type { MiddlewareOptions, ConnectMiddleware } from './adapters/connect-middleware';
export type { FetchHandler } from './adapters/fetch-handler';
export type { DeliveryInput } from './delivery-input';
export type { OrderingOption, EventOrder, EventPosition } from './ordering/event-order';
export {
  DeferredDelivery,
  FinalDeliveryFailure,
  TamperedDelivery,
  type DeliveryQueue,
  type QueuedDelivery,
  type QueuedRun,
  type QueuedDeliveryProcessor,
  type DeliveryWorker,
  type WorkerOptions,
  type TakeTurn,
} from './queue/delivery-queue';
export type { WebhookResponse, WebhookResponseBody } from './answers';
export type { DatabaseClient } from './router/types';
export type {
  DeliveryContext,
  EventHandler,
  AnyEventHandler,
  HandlerErrorHandler,
  FailureContext,
  FailureHandler,
  DeliveryKeyFunction,
  StaleHandler,
  DeadLetterHandler,
  MitpoWebhooksOptions,
} from './node-types';
export type { SecretOption, Secrets } from './secrets/secret-source';
export { WebhookVerificationError, type WebhookErrorCode } from './errors';
export { sign } from './signature/sign';
export { verifySignature } from './signature/verify-signature';
export { parseEvent } from './events/parse-event';
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
} from './events/schemas';
export { MemoryReplayStore, type MemoryReplayStoreOptions } from './replay/memory-replay-store';
export type { ReplayStore, ClaimResult, OrderedClaimResult } from './replay/replay-store';
