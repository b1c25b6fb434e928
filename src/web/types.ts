import type { MitpoEventName } from '../events/schemas';
import type { DeliveryKeyFunction as CoreDeliveryKeyFunction } from '../options';
import type { FailureContext as CoreFailureContext, FailureHandler as CoreFailureHandler } from '../pipeline/failure-report';
import type * as core from '../router/types';
import type { StaleHandler as CoreStaleHandler } from '../ordering/stale-events';

// Node's types with the bytes a Web runtime has: `Uint8Array` where Node has `Buffer`.

/** What a handler learns about the delivery besides the event; `rawBody` is a `Uint8Array`. */
export type DeliveryContext = core.DeliveryContext<Uint8Array>;
/** A handler for the named event(s); may be sync or async. The answer waits for it. */
export type EventHandler<N extends MitpoEventName = MitpoEventName> = core.EventHandler<N, Uint8Array>;
/** A handler for every verified event, including types this version does not know. */
export type AnyEventHandler = core.AnyEventHandler<Uint8Array>;
/** Told when a handler throws or rejects. */
export type HandlerErrorHandler = core.HandlerErrorHandler<Uint8Array>;
/** What `onFailure` is told besides the error. */
export type FailureContext = CoreFailureContext<Uint8Array>;
/** Told once for every delivery answered with a non-2xx. */
export type FailureHandler = CoreFailureHandler<Uint8Array>;
/** Computes the replay key of a verified delivery. */
export type DeliveryKeyFunction = CoreDeliveryKeyFunction<Uint8Array>;
/** Told of each stale event `ordering` skipped. */
export type StaleHandler = CoreStaleHandler<Uint8Array>;
