import { DUPLICATE, QUEUED, type Outcome } from '../answers';
import { toError, WebhookVerificationError, codeOf } from '../errors';
import type { MitpoEvent, UnknownMitpoEvent } from '../events/schemas';
import { Listeners } from '../listeners';
import type { StaleEvents } from '../ordering/stale-events';
import { DeferredDelivery, FinalDeliveryFailure, TamperedDelivery, type DeliveryQueue, type QueuedDelivery, type QueuedRun, type TakeTurn } from '../queue/delivery-queue';
import type { EnqueueResult } from '../queue/pending-enqueues';
import type { EventRouter } from '../router/event-router';
import type { DeliveryContext } from '../router/types';
import type { DeliveryTelemetry } from '../telemetry/delivery-telemetry';
import type { Telemetry } from '../telemetry/telemetry';
import type { DeliveryTrace, FailureReport } from './failure-report';
import { aroundHandlers, handlerFailed } from './handler-runs';
import { asVerificationError, keyed, verified, type Checks, type KeyedDelivery } from './verified';
import { checkEventAge } from '../freshness/event-age';

/** Told when a queued delivery becomes a dead letter; `event` is undefined when it could not be read. `Bytes` as in `DeliveryContext`. */
export type DeadLetterHandler<Bytes extends Uint8Array = Uint8Array> = (
  event: MitpoEvent | UnknownMitpoEvent | undefined,
  ctx: DeliveryContext<Bytes>,
  error: Error,
) => unknown;

/** What a queue keeps of the request: the type and what is needed to verify the bytes again. */
const QUEUED_HEADERS = ['content-type', 'x-mitpo-signature', 'x-mitpo-timestamp', 'x-mitpo-event'] as const;

/**
 * What a failed completion is called: `committed` on a queue whose handlers
 * write in its transaction (Postgres: nothing was applied), `recorded` on one
 * without (BullMQ's applied position: the handlers' writes stand); `stale` when
 * no handler ran.
 */
const COMPLETION_FAILED = {
  committed: {
    handled: {
      error: 'The handlers succeeded, but their writes could not be committed with the done mark',
      log: (attempt: number) => `a queued delivery's transaction could not commit (attempt ${attempt}); none of its writes were applied`,
    },
    stale: {
      error: 'The event was skipped as stale, but its done mark could not be committed',
      log: (attempt: number) => `a queued delivery skipped as stale could not be marked done (attempt ${attempt}); the run counts as failed`,
    },
    moved: {
      error: 'The delivery was queued under its own key, but its kept copy could not be marked done',
      log: (attempt: number) => `a kept refused delivery was queued under its own key, but the copy could not be marked done (attempt ${attempt}); the run counts as failed`,
    },
  },
  recorded: {
    handled: {
      error: 'The handlers succeeded, but the queue could not record their completion',
      log: (attempt: number) => `a queued delivery's handlers succeeded but its completion could not be recorded (attempt ${attempt}); the run counts as failed`,
    },
    stale: {
      error: 'The event was skipped as stale, but the queue could not record it',
      log: (attempt: number) => `a queued delivery skipped as stale could not be recorded as done (attempt ${attempt}); the run counts as failed`,
    },
    moved: {
      error: 'The delivery was queued under its own key, but the queue could not record its kept copy as done',
      log: (attempt: number) => `a kept refused delivery was queued under its own key, but the copy could not be recorded as done (attempt ${attempt}); the run counts as failed`,
    },
  },
} as const;

/**
 * Durable processing: the receiver queues a verified delivery and answers at
 * once; a worker runs it later, after checking it again, since the queue's
 * storage is not trusted. A failed run is retried by the queue; after the last
 * attempt, or at once when no attempt can help, the delivery is a dead letter.
 */
export class QueuedRuns {
  constructor(
    private readonly queue: DeliveryQueue,
    private readonly deadLetters: Listeners<Parameters<DeadLetterHandler>>,
    private readonly checks: Checks,
    private readonly router: EventRouter,
    private readonly failures: FailureReport,
    private readonly telemetry: Telemetry,
    private readonly stale: StaleEvents,
  ) {}

  /** Every check passed, so the delivery is queued durably and answered at once. @throws WebhookVerificationError */
  async enqueue({ rawBody, deliveryKey }: KeyedDelivery, trace: DeliveryTrace): Promise<Outcome> {
    let queued: 'queued' | 'duplicate' | 'collision';
    const delivery = queuedDelivery(rawBody, deliveryKey, trace);
    // With a key of the app's own, two different deliveries may share one: the queue is told the body's hash to tell.
    if (this.checks.options.deliveryKey !== undefined) delivery.bodyDigest = await this.checks.platform.sha256Hex(rawBody);
    try {
      queued = await this.queue.enqueue(delivery, this.checks.options.retentionMs);
    } catch (error) {
      throw new WebhookVerificationError(
        'queue_unavailable',
        'The delivery queue could not take the delivery; it was not queued and can be retried',
        { cause: error },
      );
    }
    if (queued === 'collision') this.collided(deliveryKey, trace.event);
    return queued === 'queued' ? QUEUED : DUPLICATE;
  }

  private collided(deliveryKey: string, event: string | undefined): void {
    this.failures.worker(
      'warn',
      { code: 'delivery_key_collision', deliveryKey, ...(event === undefined ? {} : { event }) },
      'mitpo-webhooks: a delivery with other bytes already holds this delivery key, so this one was answered as a duplicate and not queued: the deliveryKey option must give each delivery its own key',
    );
  }

  /**
   * An authentic delivery the schema refused is still answered 400, and kept
   * among the dead letters with the schema's issues: a real MITPO event this
   * version cannot read is never lost. Retrying it validates it again.
   */
  async keepRefused(error: WebhookVerificationError, trace: DeliveryTrace): Promise<void> {
    const rawBody = trace.rawBody!;
    const issues = (error.cause as { issues?: unknown } | undefined)?.issues;
    const delivery = queuedDelivery(rawBody, await this.checks.platform.sha256Hex(rawBody), trace);
    delivery.refused = { code: error.code, message: error.message, ...(issues === undefined ? {} : { issues }) };
    try {
      await this.queue.enqueue(delivery, this.checks.options.retentionMs);
    } catch (cause) {
      this.failures.storeTrouble('queue_unavailable', 'mitpo-webhooks: the queue could not keep a refused authentic delivery as a dead letter', cause, trace);
    }
  }

  /** One run of a queued delivery, in a worker, with its telemetry when an SDK records. */
  async run(run: QueuedRun, trace: 'link' | 'child' = 'link'): Promise<void> {
    const telemetry = this.telemetry.startDelivery('mitpo.webhook.process', { traceparent: run.delivery.traceparent, trace, attempt: run.attempt });
    if (telemetry === undefined) {
      await this.runChecked(run, undefined);
      return;
    }
    let outcome = 'success';
    let failed = false;
    let event: string | undefined;
    try {
      outcome = await telemetry.within(() => this.runChecked(run, telemetry, (name) => (event = name)));
    } catch (error) {
      outcome = outcomeOf(error);
      // A run put off is neither an attempt nor a failure: it runs again when its resource is free.
      failed = outcome !== 'deferred';
      throw error;
    } finally {
      telemetry.end({ outcome, status: undefined, failed, event, deliveryKey: run.delivery.deliveryKey });
    }
  }

  /**
   * The queue's storage is not trusted: the stored bytes go through the same
   * checks as on arrival (all but when they were sent: a retry may come hours
   * later), the delivery key is computed again from them, and `ctx` is built
   * only from what was verified. A job MITPO did not sign as stored is
   * tampered: logged, and removed by the queue. A delivery that can never pass
   * is a dead letter at once. With `ordering`, the run takes its resource's turn
   * before any handler: a stale event is skipped, a busy resource defers the run.
   */
  private async runChecked(
    { delivery, attempt, lastAttempt, storedAs, queuedAt, exhausted, takeTurn, db, complete, undo, enqueueHere }: QueuedRun,
    telemetry: DeliveryTelemetry | undefined,
    onVerified: (event: string) => void = () => undefined,
  ): Promise<'success' | 'stale' | 'queued' | 'duplicate'> {
    const headers = keptHeaders(delivery.headers);
    // The platform's bytes (a Buffer on Node, as the handlers' types say), whatever Uint8Array the queue handed back.
    const rawBody = this.checks.platform.bytes(delivery.rawBody);
    const receivedAt = new Date(receiveTime(delivery.receivedAt, queuedAt, this.checks.options.now()));
    const trace: DeliveryTrace = { headers, startedAt: this.checks.options.now() };
    let checked: KeyedDelivery;
    let readEvent: MitpoEvent | UnknownMitpoEvent | undefined;
    try {
      const read = await verified(storedRequest(rawBody, headers), this.checks, trace, 'stored');
      readEvent = read.event;
      onVerified(read.event.event);
      checked = await keyed(read, this.checks, trace);
      // An event past maxEventAge runs only when an operator retried its dead letter:
      // otherwise a genuine delivery put back in the store could be run again for ever.
      const { options } = this.checks;
      if (delivery.retriedByOperator !== true) checkEventAge(checked.event.timestamp, options.now(), options.maxEventAgeSeconds, options.toleranceSeconds);
    } catch (error) {
      const refused = asVerificationError(error);
      // A secret that could not be resolved, or our own failure (a deliveryKey option
      // that threw), may pass on a later run; what the sender's bytes are never will.
      if ((refused.code === 'secret_unavailable' || refused.code === 'internal_error') && !lastAttempt) throw refused;
      if (TAMPERED.has(refused.code)) throw this.tampered(`its ${refused.code === 'event_mismatch' ? 'X-MITPO-Event' : 'signature'} does not hold`, delivery.deliveryKey, refused);
      const ctx: DeliveryContext = { headers, rawBody, deliveryKey: trace.deliveryKey ?? delivery.deliveryKey, receivedAt, attempt };
      this.deadLetter(readEvent, ctx, refused);
      throw new FinalDeliveryFailure(refused.message, { cause: refused });
    }
    const { event, deliveryKey } = checked;
    // An authentic delivery the schema refused on arrival was kept under the hash of
    // its bytes (no custom key could be computed then); the rest under their own key.
    const storedKey = delivery.refused === undefined ? deliveryKey : await this.checks.platform.sha256Hex(checked.rawBody);
    const idOf = this.queue.idOf?.bind(this.queue);
    if (storedKey !== delivery.deliveryKey || (storedAs !== undefined && idOf !== undefined && storedAs !== idOf(storedKey))) {
      throw this.tampered('its id or key is not the one its verified bytes give', delivery.deliveryKey);
    }
    const ctx: DeliveryContext = { headers, rawBody: checked.rawBody, deliveryKey, receivedAt, attempt, ...(db && { db }) };
    // Kept under the hash of its bytes, it would run beside MITPO's retry of it, queued under
    // the app's own key after the 400: so it moves there, where only one of the two can be.
    // No handler runs on the kept copy, so workers that died on it leave nothing to report.
    if (storedKey !== deliveryKey) {
      const { refused: _passesNow, ...kept } = delivery;
      const moving = { ...kept, deliveryKey, rawBody: checked.rawBody, headers, receivedAt: receivedAt.getTime(), bodyDigest: storedKey };
      return this.moved(moving, enqueueHere ?? this.queue.enqueue.bind(this.queue), event, ctx, lastAttempt, complete);
    }
    if (exhausted === true) {
      const died = new WorkersDied(`Every one of its ${attempt} attempts started and none was recorded as finished: the workers running it died, or lost the queue's store before recording the outcome`);
      // Its resource's position is kept as long as the dead letter, as for a run that failed
      // holding its turn: an operator may retry it after maxEventAge.
      try {
        died.order = this.checks.options.orderOf?.(event);
      } catch {
        // An ordering.key that throws leaves nothing to keep; the dead letter is reported all the same.
      }
      this.deadLetter(event, ctx, died);
      throw died;
    }
    const turn = await this.turnOf(event, takeTurn, ctx, lastAttempt);
    if (turn === 'busy') throw new DeferredDelivery('another event of the same resource is being handled; this one runs after it');
    if (turn !== undefined && turn !== 'taken') {
      await this.completed(complete, event, ctx, lastAttempt, 'stale');
      this.stale.skipped(event, toldOf(ctx), turn.stale);
      return 'stale';
    }
    const failures = await this.router.dispatch(event, ctx, aroundHandlers(telemetry, event.event));
    if (failures.length === 0) {
      await this.completed(complete, event, ctx, lastAttempt, 'handled');
      return 'success';
    }
    // The queue keeps this message as the job's last error, for `deliveries show`: it names the handlers' own errors.
    const failed = new RunFailure('handler_failed', `${handlerFailed(failures).message}: ${failures.map((failure) => failure.message).join('; ')}`, {
      cause: failures.length === 1 ? failures[0] : new AggregateError(failures),
    });
    const notUndone = await undoneOrFinal(undo);
    if (notUndone !== undefined) {
      // Why it cannot be undone, and why the handlers failed, kept together: both are the operator's to see.
      const dead = new CannotUndo(codeOf(notUndone) ?? 'handler_failed', `${notUndone.message}. The handlers' errors: ${failures.map((failure) => failure.message).join('; ')}`, {
        cause: failed.cause,
      });
      throw this.failedRun(dead, `a queued delivery's handlers failed, and what they wrote cannot be undone (attempt ${attempt})`, event, ctx, true);
    }
    throw this.failedRun(failed, `a queued delivery's handlers failed (attempt ${attempt})`, event, ctx, lastAttempt);
  }

  /**
   * A delivery the schema refused on arrival, kept under the hash of its bytes
   * (its key of the app's own could not be computed then), that passes now (a
   * newer version runs the worker): queued again under that key, as the
   * receiver would queue it, and its kept copy done without running a handler.
   * Which of it and MITPO's retry comes first runs; the other is a duplicate.
   * On a queue with transactions the two commit together, on the run's own
   * connection; elsewhere a move that timed out may still land, and the kept
   * copy's retry then finds it a duplicate.
   */
  private async moved(
    delivery: QueuedDelivery,
    enqueue: (delivery: QueuedDelivery, retentionMs: number) => Promise<EnqueueResult>,
    event: MitpoEvent | UnknownMitpoEvent,
    ctx: DeliveryContext,
    lastAttempt: boolean,
    complete: QueuedRun['complete'],
  ): Promise<'queued' | 'duplicate'> {
    let queued: EnqueueResult;
    try {
      queued = await enqueue(delivery, this.checks.options.retentionMs);
    } catch (error) {
      const message = `a kept refused delivery that passes now could not be queued under its own key (attempt ${ctx.attempt})`;
      throw this.failedRun(RunFailure.of('queue_unavailable', error), message, event, ctx, lastAttempt);
    }
    if (queued === 'collision') this.collided(delivery.deliveryKey, event.event);
    await this.completed(complete, event, ctx, lastAttempt, 'moved');
    return queued === 'queued' ? 'queued' : 'duplicate';
  }

  /**
   * With `ordering`, the resource's turn for this run; undefined without it, or
   * for an event of no resource. Our side's failure here (an `ordering.key`
   * that threw, the queue's store) fails the run like a failed handler: retried,
   * and after the last attempt a dead letter that `onDeadLetter` is told of.
   */
  private async turnOf(
    event: MitpoEvent | UnknownMitpoEvent,
    takeTurn: TakeTurn | undefined,
    ctx: DeliveryContext,
    lastAttempt: boolean,
  ): Promise<Awaited<ReturnType<TakeTurn>> | undefined> {
    try {
      const order = this.checks.options.orderOf?.(event);
      if (order === undefined) return undefined;
      if (takeTurn === undefined) throw new Error('the queue gave this run no takeTurn, so it cannot keep order');
      return await takeTurn(order);
    } catch (error) {
      const message = `a queued delivery could not take its resource's turn (attempt ${ctx.attempt})`;
      throw this.failedRun(RunFailure.of('internal_error', error), message, event, ctx, lastAttempt);
    }
  }

  /**
   * The queue's completion, where it can fail: a handler that swallowed a
   * failed `ctx.db` query leaves the transaction aborted, and then nothing it
   * wrote can commit; on a queue without a transaction (BullMQ recording the
   * applied position) the handlers' writes stand. Either way the run failed,
   * and is reported and retried as one, in the words of `COMPLETION_FAILED`.
   */
  private async completed(
    complete: QueuedRun['complete'],
    event: MitpoEvent | UnknownMitpoEvent,
    ctx: DeliveryContext,
    lastAttempt: boolean,
    run: keyof (typeof COMPLETION_FAILED)['committed'],
  ): Promise<void> {
    if (complete === undefined) return;
    try {
      await complete();
    } catch (error) {
      // One no later attempt can help (the handlers ended the run's transaction): a dead letter now.
      if (error instanceof FinalDeliveryFailure) {
        throw this.failedRun(error, `a queued delivery cannot be completed (attempt ${ctx.attempt}): ${error.message}`, event, ctx, true, codeOf(error) ?? 'commit_failed');
      }
      const words = COMPLETION_FAILED[ctx.db === undefined ? 'recorded' : 'committed'][run];
      const failed = new RunFailure('commit_failed', `${words.error}: ${toError(error).message}`, { cause: error });
      throw this.failedRun(failed, words.log(ctx.attempt), event, ctx, lastAttempt);
    }
  }

  /**
   * A run that failed, the handlers' fault or our side's: logged at `error`
   * under `code`, told to `onDeadLetter` on the last attempt, and returned to
   * be thrown, so the queue retries it or keeps it as that dead letter.
   */
  private failedRun<Failed extends Error>(
    failed: Failed,
    message: string,
    event: MitpoEvent | UnknownMitpoEvent,
    ctx: DeliveryContext,
    lastAttempt: boolean,
    code = codeOf(failed),
  ): Failed {
    this.failures.worker('error', { code, event: event.event, deliveryKey: ctx.deliveryKey, attempt: ctx.attempt, err: failed }, `mitpo-webhooks: ${message}`);
    if (lastAttempt) this.deadLetter(event, ctx, failed);
    return failed;
  }

  /** Told once, when the queue keeps the delivery as a dead letter. */
  private deadLetter(event: MitpoEvent | UnknownMitpoEvent | undefined, ctx: DeliveryContext, error: Error): void {
    this.failures.worker(
      'error',
      { code: 'dead_letter', ...(event && { event: event.event }), deliveryKey: ctx.deliveryKey, attempt: ctx.attempt, err: error },
      'mitpo-webhooks: a queued delivery is kept as a dead letter; retry it with mitpo-webhooks deliveries retry',
    );
    this.telemetry.deadLetter(event?.event);
    this.deadLetters.emit(event, toldOf(ctx), error);
  }

  private tampered(reason: string, storedKey: string, cause?: Error): TamperedDelivery {
    const message = `mitpo-webhooks: a queued delivery was tampered with in the queue's storage (${reason}); it was removed and no handler ran`;
    this.failures.worker('warn', { code: 'tampered_delivery', deliveryKey: storedKey }, message);
    return new TamperedDelivery(message, cause === undefined ? undefined : { cause });
  }
}

/**
 * A run that failed, the handlers' fault or our side's, under the code it is
 * logged with: the run's outcome in telemetry, and `error.code` for
 * `onDeadLetter`. The queue keeps its message as the job's last error.
 */
class RunFailure extends Error {
  override readonly name = 'RunFailure';

  constructor(
    readonly code: string,
    message: string,
    options: ErrorOptions,
  ) {
    super(message, options);
  }

  /** Our side's failure `error` (the queue's, an `ordering.key`'s), its message kept. */
  static of(code: string, error: unknown): RunFailure {
    return new RunFailure(code, toError(error).message, { cause: error });
  }
}

/** Failed handlers whose writes the queue could not undo: a dead letter at once, their own errors under `cause`. */
class CannotUndo extends FinalDeliveryFailure {
  override readonly name = 'CannotUndo';

  constructor(
    readonly code: string,
    message: string,
    options: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A delivery whose every attempt started and none finished: a dead letter with no handler run in this attempt. */
class WorkersDied extends FinalDeliveryFailure {
  override readonly name = 'WorkersDied';
  readonly code = 'workers_died';
}

/**
 * The queue's undo of the failed handlers' writes: a FinalDeliveryFailure when it
 * cannot be made (they ended the run's transaction). Any other failure is the
 * queue's to deal with as it settles the run (Postgres drops the transaction).
 */
async function undoneOrFinal(undo: QueuedRun['undo']): Promise<FinalDeliveryFailure | undefined> {
  try {
    await undo?.();
    return undefined;
  } catch (error) {
    return error instanceof FinalDeliveryFailure ? error : undefined;
  }
}


/** A failed run's outcome, as its span and the deliveries counter record it. */
function outcomeOf(error: unknown): string {
  if (error instanceof DeferredDelivery) return 'deferred';
  if (error instanceof RunFailure || error instanceof WebhookVerificationError || error instanceof TamperedDelivery) return error.code;
  if (error instanceof FinalDeliveryFailure) {
    // Refused by the worker's checks (an event past maxEventAge, a schema that refuses it), or
    // a failure of its own code (workers that died, handlers that ended the run's transaction).
    if (error.cause instanceof WebhookVerificationError) return error.cause.code;
    const code = codeOf(error);
    if (code !== undefined) return code;
  }
  return 'internal_error';
}

/**
 * What proves a stored delivery was altered: MITPO's signature over it fails,
 * or the event header kept with it names another event than the signed body.
 */
const TAMPERED = new Set(['invalid_signature', 'missing_signature', 'malformed_signature', 'event_mismatch']);

/** How long a receiver can take from a delivery's arrival to the queue's taking it: reading, checking, enqueueing. */
const MOST_RECEIVE_TO_QUEUE_MS = 10 * 60 * 1000;

/**
 * The receive time a stored delivery claims, believed only within what is
 * possible: not after the queue took it, nor long before. Otherwise the
 * queue's own time (a store could claim 1970, or next year).
 */
function receiveTime(stored: unknown, queuedAt: number | undefined, now: number): number {
  const took = queuedAt ?? now;
  const claimed = typeof stored === 'number' && Number.isFinite(stored) ? stored : undefined;
  return claimed !== undefined && claimed <= took && claimed >= took - MOST_RECEIVE_TO_QUEUE_MS ? claimed : took;
}

/**
 * `ctx` as `onStale` and `onDeadLetter` are told it: without `db`, which only the
 * handlers write through, inside the run's transaction. `onStale` is told after
 * that transaction committed, and `onDeadLetter` in a run whose writes roll back.
 */
function toldOf(ctx: DeliveryContext): DeliveryContext {
  if (ctx.db === undefined) return ctx;
  const { db: _onlyForHandlers, ...told } = ctx;
  return told;
}

/** Only the headers a queue keeps, as strings: anything else a store holds is not the request's. */
function keptHeaders(stored: unknown): Record<string, string> {
  const headers: Record<string, string> = {};
  if (typeof stored !== 'object' || stored === null) return headers;
  for (const name of QUEUED_HEADERS) {
    const value = (stored as Record<string, unknown>)[name];
    if (typeof value === 'string') headers[name] = value;
  }
  return headers;
}

/** A stored delivery as a request: its kept headers and bytes, no method to check. */
function storedRequest(rawBody: Uint8Array, headers: Record<string, string>) {
  return { method: undefined, headers, readBody: () => Promise.resolve(rawBody) };
}

function queuedDelivery(rawBody: Uint8Array, deliveryKey: string, trace: DeliveryTrace): QueuedDelivery {
  const headers = keptHeaders(trace.headers);
  const traceparent = trace.telemetry?.traceparent();
  return { deliveryKey, rawBody, headers, receivedAt: trace.startedAt, ...(traceparent && { traceparent }) };
}
