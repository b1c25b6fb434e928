import type { MitpoEvent, UnknownMitpoEvent } from '../events/schemas';
import { Listeners } from '../listeners';
import type { FailureReport } from '../pipeline/failure-report';
import type { DeliveryContext } from '../router/types';
import { positionOf, type EventPosition } from './event-order';

/** Told of a stale event, skipped because `latest`, a later event of its resource, was already applied. */
export type StaleHandler<Bytes extends Uint8Array = Uint8Array> = (
  event: MitpoEvent | UnknownMitpoEvent,
  ctx: DeliveryContext<Bytes>,
  stale: { latest: EventPosition },
) => unknown;

/**
 * A stale event is not a failure: its handlers do not run, the answer is 200
 * `stale` (MITPO stops retrying), and the app hears of it through `onStale`
 * and one `info` record, inline or in a worker alike.
 */
export class StaleEvents {
  readonly listeners = new Listeners<Parameters<StaleHandler>>('onStale');

  constructor(private readonly failures: FailureReport) {}

  skipped(event: MitpoEvent | UnknownMitpoEvent, ctx: DeliveryContext, latest: number): void {
    const position = positionOf(latest);
    this.failures.worker(
      'info',
      { code: 'stale', event: event.event, deliveryKey: ctx.deliveryKey, latest: { timestamp: position.timestamp.toISOString(), rank: position.rank } },
      'mitpo-webhooks: a stale event was skipped: a later event of the same resource was already applied',
    );
    this.listeners.emit(event, ctx, { latest: position });
  }
}
