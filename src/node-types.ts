import type { MitpoEventName } from './events/schemas';
import type * as core from './router/types';
import type { DeliveryKeyFunction as CoreDeliveryKeyFunction, MitpoWebhooksOptions as CoreMitpoWebhooksOptions } from './options';
import type { FailureContext as CoreFailureContext, FailureHandler as CoreFailureHandler } from './pipeline/failure-report';
import type { DeadLetterHandler as CoreDeadLetterHandler } from './pipeline/queued-runs';
import type { StaleHandler as CoreStaleHandler } from './ordering/stale-events';

// The shared types with the bytes Node's adapters read: `Buffer` where the core
// says `Uint8Array`. Only the main entry names `Buffer`, so a Worker project
// without Node's types can check `mitpo-webhooks/web`'s declarations.

/** What a handler learns about the delivery besides the event; `rawBody` is a `Buffer`. */
export type DeliveryContext<Bytes extends Uint8Array = Buffer> = core.DeliveryContext<Bytes>;
/** A handler for the named event(s); may be sync or async. The answer waits for it. */
export type EventHandler<N extends MitpoEventName = MitpoEventName, Bytes extends Uint8Array = Buffer> = core.EventHandler<N, Bytes>;
/** A handler for every verified event, including types this version does not know. */
export type AnyEventHandler<Bytes extends Uint8Array = Buffer> = core.AnyEventHandler<Bytes>;
/** Told when a handler throws or rejects; `error` is always an `Error` (a thrown non-Error is wrapped, kept as `cause`). */
export type HandlerErrorHandler<Bytes extends Uint8Array = Buffer> = core.HandlerErrorHandler<Bytes>;
/** What `onFailure` is told besides the error. */
export type FailureContext<Bytes extends Uint8Array = Buffer> = CoreFailureContext<Bytes>;
/** Told once for every delivery answered with a non-2xx; it cannot change the answer. */
export type FailureHandler<Bytes extends Uint8Array = Buffer> = CoreFailureHandler<Bytes>;
/** Computes the replay key of a verified delivery; see {@link MitpoWebhooksOptions.deliveryKey}. */
export type DeliveryKeyFunction<Bytes extends Uint8Array = Buffer> = CoreDeliveryKeyFunction<Bytes>;
/** Told of each stale event `ordering` skipped. */
export type StaleHandler<Bytes extends Uint8Array = Buffer> = CoreStaleHandler<Bytes>;
/** Told when a queued delivery becomes a dead letter; `event` is undefined when it could not be read. */
export type DeadLetterHandler<Bytes extends Uint8Array = Buffer> = CoreDeadLetterHandler<Bytes>;
/** Options of `new MitpoWebhooks()`. Every duration is in seconds (fractions allowed). */
export type MitpoWebhooksOptions<Bytes extends Uint8Array = Buffer> = CoreMitpoWebhooksOptions<Bytes>;
