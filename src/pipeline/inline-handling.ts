import { DUPLICATE, STALE, SUCCESS, type Outcome } from '../answers';
import type { StaleEvents } from '../ordering/stale-events';
import { toError, WebhookVerificationError } from '../errors';
import type { ResolvedOptions } from '../options';
import type { Platform } from '../platform/platform';
import { Claims, type Claim } from '../replay/claims';
import type { EventRouter } from '../router/event-router';
import type { DeliveryContext } from '../router/types';
import { aroundHandlers, handlerFailed } from './handler-runs';
import type { DeliveryTrace, FailureReport } from './failure-report';
import { shuttingDown, type Shutdown } from './shutdown';
import type { KeyedDelivery } from './verified';

const TIMED_OUT = Symbol('timed out');
const SHUT_DOWN = Symbol('shut down');

/**
 * Handling a verified delivery in the request: claim its key, run the
 * handlers, then complete the claim on success or release it on failure, so
 * MITPO's retry runs them again. A failure never loses an event, and a success
 * never runs twice.
 */
export class InlineHandling {
  private readonly claims: Claims<DeliveryTrace> | undefined;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly router: EventRouter,
    private readonly shutdown: Shutdown,
    private readonly failures: FailureReport,
    platform: Platform,
    private readonly stale: StaleEvents,
  ) {
    this.claims =
      options.replay === undefined
        ? undefined
        : new Claims<DeliveryTrace>(
            options.replay,
            options.inFlightTtlMs,
            (code, message, error, trace) => failures.storeTrouble(code, `mitpo-webhooks: ${message}`, error, trace),
            (start) => platform.detached(start),
          );
    if (this.claims !== undefined) shutdown.beforeConnectionsClose(() => this.claims!.stop());
  }

  /** Replay check, then the handlers, then the claim settled. @throws WebhookVerificationError */
  async handle({ event, rawBody, deliveryKey }: KeyedDelivery, trace: DeliveryTrace): Promise<Outcome> {
    if (this.shutdown.pastDeadline) throw shuttingDown('the delivery was not handled');
    let claim: Claim<DeliveryTrace> | undefined;
    if (this.claims !== undefined) {
      const order = this.options.orderOf?.(event);
      let taken: Awaited<ReturnType<Claims<DeliveryTrace>['take']>>;
      try {
        taken = await this.claims.take(deliveryKey, trace, order);
      } catch (error) {
        throw new WebhookVerificationError(
          'replay_store_unavailable',
          'The replay store could not be reached; the delivery was not handled and can be retried',
          { cause: error },
        );
      }
      if (taken === 'done') return DUPLICATE;
      if (taken === 'in_flight') {
        throw new WebhookVerificationError('in_flight', 'This delivery is being handled right now by another request; retry later');
      }
      if (taken === 'resource_in_flight') {
        throw new WebhookVerificationError('resource_in_flight', 'Another event of the same resource is being handled right now; retry later');
      }
      if ('stale' in taken) {
        this.stale.skipped(event, contextOf(rawBody, deliveryKey, trace), taken.stale);
        return STALE;
      }
      claim = taken;
      // The deadline may have passed while the store answered: no handler starts after it.
      if (this.shutdown.pastDeadline) {
        await this.settle(claim, [new Error('shut down before its handlers started')], trace);
        throw shuttingDown('the delivery was not handled');
      }
    }
    const handling = this.router.dispatch(event, contextOf(rawBody, deliveryKey, trace), aroundHandlers(trace.telemetry, event.event));
    const failures = await this.bounded(handling);
    if (failures === SHUT_DOWN) {
      // Released, never completed: MITPO's retry runs the handlers again elsewhere or later.
      if (claim !== undefined) await this.settle(claim, [new Error('abandoned at shutdown')], trace);
      throw shuttingDown('the handlers did not finish before it closed, and the delivery was released');
    }
    if (failures === TIMED_OUT) {
      // The claim stays (and is renewed) until the handlers settle, so a retry meanwhile is 409, never a second run.
      // They are still running: close() waits for them as for any other, and at its deadline
      // the claim is released, never completed, and nothing reaches the store after that.
      this.shutdown.enter();
      let over = false;
      const end = (outcome: readonly Error[]) => {
        if (over) return;
        over = true;
        cancelDeadline();
        void (claim === undefined ? Promise.resolve() : this.settle(claim, outcome, trace)).finally(() => this.shutdown.leave());
      };
      const cancelDeadline = this.shutdown.onDeadline(() => end([new Error('abandoned at shutdown')]));
      void handling.then(
        (late) => {
          if (late.length > 0) this.failures.lateHandlerFailure(late, trace);
          end(late);
        },
        (error: unknown) => end([toError(error)]),
      );
      throw new WebhookVerificationError(
        'handler_timeout',
        `The handlers did not finish within handlerTimeout (${this.options.handlerTimeoutMs! / 1000} s); ` +
          'the delivery stays claimed until they do, and can be retried',
      );
    }
    if (claim !== undefined) await this.settle(claim, failures, trace);
    if (failures.length > 0) throw handlerFailed(failures);
    return SUCCESS;
  }

  /**
   * The handlers' failures, or what came first: `handlerTimeout`, or the
   * shutdown's deadline. One promise per delivery, and a timer only when
   * `handlerTimeout` is set.
   */
  private bounded(handling: Promise<readonly Error[]>): Promise<readonly Error[] | typeof TIMED_OUT | typeof SHUT_DOWN> {
    if (this.shutdown.pastDeadline) return Promise.resolve(SHUT_DOWN);
    const ms = this.options.handlerTimeoutMs;
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (result: readonly Error[] | typeof TIMED_OUT | typeof SHUT_DOWN) => {
        clearTimeout(timer);
        cancelDeadline();
        resolve(result);
      };
      const cancelDeadline = this.shutdown.onDeadline(() => finish(SHUT_DOWN));
      if (ms !== undefined) timer = setTimeout(() => finish(TIMED_OUT), ms);
      // dispatch() reports handler failures as values; a rejection would be our bug, and still a failure.
      void handling.then(finish, (error: unknown) => finish([toError(error)]));
    });
  }

  /**
   * A store failure here is logged, never answered: a failed complete() still answers 200,
   * since the handlers did succeed, and is tried again in the background until it lands.
   */
  private async settle(claim: Claim<DeliveryTrace>, failures: readonly Error[], trace: DeliveryTrace): Promise<void> {
    try {
      if (failures.length > 0) await this.claims!.release(claim);
      else await this.claims!.complete(claim, this.options.retentionMs);
    } catch (error) {
      if (failures.length > 0) {
        this.failures.storeTrouble('replay_store_unavailable', 'mitpo-webhooks: the replay store could not release a failed delivery; it is retryable once the in-flight TTL lapses', error, trace);
        return;
      }
      this.failures.storeTrouble('replay_store_unavailable', 'mitpo-webhooks: the replay store could not mark a handled delivery as done; trying again in the background', error, trace);
      this.claims!.completeLater(claim, this.options.retentionMs, (lastError, atClose) =>
        this.failures.storeTrouble(
          'replay_store_unavailable',
          `mitpo-webhooks: the replay store could not mark a handled delivery as done ${atClose ? 'before close()' : 'within the in-flight TTL'}; ` +
            'a replay after the in-flight TTL would run it again',
          lastError,
          trace,
        ),
      );
    }
  }
}

/** What the handlers (or `onStale`) are told of a delivery handled in its request: its first attempt. */
function contextOf(rawBody: Uint8Array, deliveryKey: string, trace: DeliveryTrace): DeliveryContext {
  return { headers: trace.headers, rawBody, deliveryKey, receivedAt: new Date(trace.startedAt), attempt: 1 };
}
