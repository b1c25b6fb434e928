import { toError, withoutCredentials, type WebhookVerificationError } from '../errors';
import type { DeliveryHeaders } from '../headers/delivery-headers';
import { ignoreRejection, Listeners } from '../listeners';
import type { WebhookLogger } from '../options';
import type { DeliveryTelemetry } from '../telemetry/delivery-telemetry';
import { sanitizeText } from '../text/sanitize-text';

/** What `onFailure` is told besides the error; `Bytes` as in `DeliveryContext`. */
export interface FailureContext<Bytes extends Uint8Array = Uint8Array> {
  /** The request's headers: a plain object, names in lower case. */
  headers: DeliveryHeaders;
  /** True when the signature was valid: the delivery really came from MITPO. */
  authenticated?: true | undefined;
  /** The body exactly as received; only for an authentic delivery, never a forged one. */
  rawBody?: Bytes | undefined;
  /** For an authentic `invalid_payload`: what the event schema refused, so a real MITPO event is never lost without a trace. */
  issues?: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string; readonly code?: string | undefined }> | undefined;
}

/** Told once for every delivery answered with a non-2xx; it cannot change the answer. */
export type FailureHandler<Bytes extends Uint8Array = Uint8Array> = (error: WebhookVerificationError, context: FailureContext<Bytes>) => unknown;

/** What the pipeline learns about a delivery as it passes each check, for `onFailure` and the logger. */
export interface DeliveryTrace {
  readonly headers: DeliveryHeaders;
  /** When processing began, by the configured clock, for `durationMs`. */
  readonly startedAt: number;
  /** Set once the signature matched. */
  rawBody?: Uint8Array | undefined;
  /** Set once the event was verified. */
  event?: string | undefined;
  deliveryKey?: string | undefined;
  /** The delivery's span and metrics, when an OpenTelemetry SDK is registered. */
  telemetry?: DeliveryTelemetry | undefined;
}

/** The least time between two records of a worker's trouble. */
const WORKER_TROUBLE_EVERY_MS = 60_000;

/**
 * Tells `onFailure` and the logger about a refused delivery. Neither can change
 * the answer: a throwing or rejecting `onFailure` is ignored, and so is a
 * throwing logger. A forged delivery's body is never handed on, and nothing in
 * a record is a secret or an expected signature.
 */
export class FailureReport {
  private readonly listeners = new Listeners<[WebhookVerificationError, FailureContext]>('onFailure');
  /** When a worker's trouble was last logged, and how many times it came since. */
  private troubleLoggedAt = -Infinity;
  private troubleSince = 0;

  constructor(
    private readonly logger: WebhookLogger | undefined,
    private readonly now: () => number,
  ) {}

  add(handler: unknown): void {
    this.listeners.add(handler);
  }

  report(error: WebhookVerificationError, trace: DeliveryTrace): void {
    // In place, so the app's error handler (passErrors) gets it without them too.
    withoutCredentials(error.cause);
    this.listeners.emit(error, failureContext(error, trace));
    this.log(error, trace);
  }

  /** Handlers that failed after `handlerTimeout` answered: onError hears them, and the log must too. */
  lateHandlerFailure(failures: readonly Error[], trace: DeliveryTrace): void {
    const err = failures.length === 1 ? failures[0] : new AggregateError(failures, 'Handlers failed');
    this.write(
      'error',
      { code: 'handler_failed', ...fields(trace, this.now()), err },
      'mitpo-webhooks: the handlers failed after handlerTimeout had answered the delivery; a retry runs them again',
    );
  }

  /**
   * A store failure after the handlers ran (or in the background), which cannot change the answer any more.
   * @param code - `replay_store_unavailable` or `queue_unavailable` for a store that failed; `claim_lost` for a claim it let go
   */
  storeTrouble(code: string, message: string, cause: unknown, trace: Partial<DeliveryTrace>): void {
    this.write('error', { code, ...fields(trace, this.now()), ...(cause === undefined ? {} : { err: toError(cause) }) }, message);
  }

  /** A worker's record (a tampered job at warn, a failed run or a dead letter at error, with `err`), or a stale event's at info. */
  worker(level: 'info' | 'warn' | 'error', record: Record<string, unknown> & Pick<DeliveryTrace, 'event' | 'deliveryKey'>, message: string): void {
    // The same cleaning as every other record: a stored key or event is the store's text.
    this.write(level, { ...record, ...fields(record, this.now()) }, message);
  }

  /**
   * A worker that cannot take or settle deliveries (its store unreachable, a
   * query refused) tries again at every poll: logged at `error` once a minute at
   * most, with how many more there were, so a worker that is stuck is never
   * silent and one whose store is down does not flood the log.
   */
  workerTrouble(error: unknown): void {
    const now = this.now();
    if (now - this.troubleLoggedAt < WORKER_TROUBLE_EVERY_MS) {
      this.troubleSince += 1;
      return;
    }
    const repeated = this.troubleSince;
    this.troubleLoggedAt = now;
    this.troubleSince = 0;
    this.write('error', { code: 'queue_unavailable', err: toError(error), ...(repeated > 0 && { repeated }) }, "mitpo-webhooks: the queue's worker could not take or settle deliveries; it tries again");
  }

  private log(error: WebhookVerificationError, trace: DeliveryTrace): void {
    const record: Record<string, unknown> = { code: error.code, status: error.status, ...fields(trace, this.now()) };
    // Forged or malformed traffic is the sender's, at warn; a burst of MITPO retries
    // of a delivery still being handled (409) is routine, at debug; our own failures
    // (handlers, stores, misconfiguration) are errors, with the error itself.
    if (error.status >= 500) {
      this.write('error', { ...record, err: error.cause === undefined ? error : toError(error.cause) }, `mitpo-webhooks: ${error.message}`);
    } else {
      this.write(error.status === 409 ? 'debug' : 'warn', record, `mitpo-webhooks: refused delivery: ${error.message}`);
    }
  }

  private write(level: keyof WebhookLogger, record: Record<string, unknown>, message: string): void {
    withoutCredentials(record.err);
    try {
      // An async logger whose sink is down rejects: unhandled, that would end the process.
      ignoreRejection(this.logger?.[level](record, message));
    } catch {
      // Logging must never change an answer.
    }
  }
}

function fields(trace: Partial<DeliveryTrace>, now: number): Record<string, unknown> {
  return {
    ...(trace.event === undefined ? {} : { event: sanitizeText(trace.event) }),
    ...(trace.deliveryKey === undefined ? {} : { deliveryKey: sanitizeText(trace.deliveryKey, 200) }),
    ...(trace.startedAt === undefined ? {} : { durationMs: now - trace.startedAt }),
  };
}

function failureContext(error: WebhookVerificationError, trace: DeliveryTrace): FailureContext {
  if (trace.rawBody === undefined) return { headers: trace.headers };
  const context: FailureContext = { headers: trace.headers, authenticated: true, rawBody: trace.rawBody };
  const issues = (error.cause as { issues?: FailureContext['issues'] } | undefined)?.issues;
  if (error.code === 'invalid_payload' && Array.isArray(issues)) context.issues = issues;
  return context;
}
