import { isAscii, isUtf8 } from 'node:buffer';
import { toError, WebhookVerificationError } from './errors';
import { parseAnyEvent } from './events/parse-event';
import { eventTimeMs } from './events/event-time';
import { isMitpoEventName, type MitpoEvent, type UnknownMitpoEvent } from './events/schemas';
import { checkHeaders, type CheckedHeaders } from './headers/check-headers';
import type { WebhookHeaders } from './headers/header-source';
import type { ResolvedOptions } from './options';
import { deliveryKeyOf } from './replay/delivery-key';
import type { EventRouter } from './router/event-router';
import { digestMatchesAny } from './signature/hmac';
import type { PreparedSecret } from './signature/prepared-secret';
import { isPromiseLike, type MaybePromise } from './maybe-promise';
import type { ClaimResult } from './replay/replay-store';
import { fastestFaceOf, type PipelineReplayStore } from './replay/sync-replay-store';
import type { DeliveryContext } from './router/types';
import { asBuffer } from './body/as-buffer';
import { payloadTooLarge } from './body/size-limit';
import { BodyDeadlines } from './body/body-deadlines';
import { DUPLICATE, refusal, SUCCESS, type Outcome } from './answers';

/** A delivery as `verify()` and `receive()` take it. */
export interface DeliveryInput {
  /** The body exactly as received: bytes, or a string taken as UTF-8. */
  rawBody: Buffer | Uint8Array | string;
  /** The request headers; names are matched without regard to case. */
  headers: WebhookHeaders;
}

/** What `onFailure` is told besides the error. */
export interface FailureContext {
  headers: WebhookHeaders;
}

export type { Outcome, WebhookResponse, WebhookResponseBody } from './answers';

export type FailureHandler = (error: WebhookVerificationError, context: FailureContext) => unknown;

/**
 * The delivery pipeline shared by every adapter: each adapter only knows how to
 * get headers and bytes out of its framework and how to write the answer.
 */
export class DeliveryPipeline {
  private failureHandlers: FailureHandler[] = [];

  /** The replay store, through its synchronous face when it has one (the memory store), so it costs no promise. */
  private readonly store: PipelineReplayStore | undefined;

  /** Watches every body read of this pipeline for bodyTimeout. */
  readonly bodyDeadlines: BodyDeadlines;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly router: EventRouter,
  ) {
    this.store = options.replay === undefined ? undefined : fastestFaceOf(options.replay);
    this.bodyDeadlines = new BodyDeadlines(options.bodyTimeoutMs);
  }

  get limit(): number {
    return this.options.limit;
  }

  /** The arrival time, from the configured clock. */
  receivedNow(): Date {
    return new Date(this.options.now());
  }

  onFailure(handler: FailureHandler): void {
    if (typeof handler !== 'function') {
      throw new TypeError(`mitpo-webhooks: onFailure() needs a function as its handler (got ${typeof handler})`);
    }
    this.failureHandlers = [...this.failureHandlers, handler];
  }

  /**
   * Every check that needs only the headers. `nodeHeaders`: the object is Node's
   * `req.headers`, names already lower case. @throws WebhookVerificationError
   */
  checkHeaders(headers: WebhookHeaders, nodeHeaders = false): CheckedHeaders {
    return checkHeaders(headers, this.options.now(), this.options.toleranceSeconds, nodeHeaders);
  }

  /**
   * Every check that needs the body, replay aside. Synchronous unless the secret
   * comes from an async function. @throws WebhookVerificationError (or rejects with one)
   */
  checkBody(rawBody: Buffer, checked: CheckedHeaders): MaybePromise<MitpoEvent | UnknownMitpoEvent> {
    if (rawBody.byteLength > this.options.limit) throw payloadTooLarge(this.options.limit);
    const secrets = this.options.secrets();
    if (isPromiseLike(secrets)) return secrets.then((keys) => this.checkSignedBody(rawBody, checked, keys));
    return this.checkSignedBody(rawBody, checked, secrets);
  }

  private checkSignedBody(
    rawBody: Buffer,
    checked: CheckedHeaders,
    secrets: readonly PreparedSecret[],
  ): MitpoEvent | UnknownMitpoEvent {
    if (!digestMatchesAny(rawBody, checked.digest, secrets)) {
      throw new WebhookVerificationError(
        'invalid_signature',
        'X-MITPO-Signature does not match the body under the configured secret: check that the secret is this ' +
          "endpoint's and that nothing re-encoded the body before verification",
      );
    }
    const event = parseAnyEvent(parseJson(rawBody));
    if (checked.eventHeader !== undefined && checked.eventHeader !== event.event) {
      throw new WebhookVerificationError(
        'event_mismatch',
        `X-MITPO-Event does not match the body's event ("${checked.eventHeader.slice(0, 64)}" vs "${event.event.slice(0, 64)}")`,
      );
    }
    this.checkEventAge(event.timestamp);
    return event;
  }

  /**
   * Replay check, then the handlers. Never throws or rejects: every failure
   * becomes an outcome. Synchronous when the store and the handlers are.
   */
  deliver(
    event: MitpoEvent | UnknownMitpoEvent,
    rawBody: Buffer,
    headers: WebhookHeaders,
    receivedAt: Date,
  ): MaybePromise<Outcome> {
    const deliveryKey = deliveryKeyOf(rawBody);
    const ctx: DeliveryContext = { headers, rawBody, deliveryKey, receivedAt };
    const store = this.store;
    if (store === undefined) return this.afterHandlers(this.router.dispatch(event, ctx), headers, undefined);
    let claim: MaybePromise<ClaimResult>;
    try {
      claim = store.claim(deliveryKey, this.options.inFlightTtlMs);
    } catch (error) {
      return this.fail(storeUnavailable('could not claim the delivery', error), headers);
    }
    // Methods rather than closures on the synchronous path: it runs for every delivery.
    if (!isPromiseLike(claim)) return this.afterClaim(claim, event, ctx);
    return Promise.resolve(claim).then(
      (claimed) => this.afterClaim(claimed, event, ctx),
      (error: unknown) => this.fail(storeUnavailable('could not claim the delivery', error), headers),
    );
  }

  private afterClaim(claim: unknown, event: MitpoEvent | UnknownMitpoEvent, ctx: DeliveryContext): MaybePromise<Outcome> {
    if (claim === 'done') return DUPLICATE;
    if (claim === 'in_flight') {
      return this.fail(
        new WebhookVerificationError('in_flight', 'This delivery is being handled right now by another request; retry later'),
        ctx.headers,
      );
    }
    if (claim !== 'claimed') return this.fail(storeUnavailable(`claim() answered ${JSON.stringify(claim)}`), ctx.headers);
    return this.afterHandlers(this.router.dispatch(event, ctx), ctx.headers, ctx.deliveryKey);
  }

  /**
   * The handlers' result, settled in the store (when `deliveryKey` was claimed),
   * as an answer; with `handlerTimeout` when they run asynchronously.
   */
  private afterHandlers(
    dispatched: MaybePromise<Error[]>,
    headers: WebhookHeaders,
    deliveryKey: string | undefined,
  ): MaybePromise<Outcome> {
    if (!isPromiseLike(dispatched)) return this.answer(dispatched, headers, deliveryKey);
    const ms = this.options.handlerTimeoutMs;
    if (ms === undefined) return dispatched.then((failures) => this.answer(failures, headers, deliveryKey));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), ms);
    });
    return Promise.race([dispatched, timeout]).then((failures) => {
      clearTimeout(timer);
      if (failures !== TIMED_OUT) return this.answer(failures, headers, deliveryKey);
      // The claim stays until the handlers settle, so a retry meanwhile is 409, never a second run.
      if (deliveryKey !== undefined) dispatched.then((late) => this.settle(deliveryKey, late), () => undefined);
      return this.fail(handlerTimedOut(ms), headers);
    });
  }

  private answer(failures: Error[], headers: WebhookHeaders, deliveryKey: string | undefined): MaybePromise<Outcome> {
    const settled = deliveryKey === undefined ? undefined : this.settle(deliveryKey, failures);
    if (isPromiseLike(settled)) return settled.then(() => this.outcomeOf(failures, headers));
    return this.outcomeOf(failures, headers);
  }

  private outcomeOf(failures: Error[], headers: WebhookHeaders): Outcome {
    return failures.length > 0 ? this.fail(handlerFailed(failures), headers) : SUCCESS;
  }

  /** Completes the delivery after a success, releases it after a failure; a store error is logged, never thrown. */
  private settle(deliveryKey: string, failures: Error[]): MaybePromise<void> {
    const failed = failures.length > 0;
    const store = this.store!;
    let settled: MaybePromise<void>;
    try {
      settled = failed ? store.release(deliveryKey) : store.complete(deliveryKey, this.options.retentionMs);
    } catch (error) {
      this.reportSettleError(failed, error);
      return undefined;
    }
    if (!isPromiseLike(settled)) return undefined;
    // A failed complete() still answers 200: the handlers did succeed, and a non-2xx would invite a retry that runs them again.
    return Promise.resolve(settled).then(
      () => undefined,
      (error: unknown) => this.reportSettleError(failed, error),
    );
  }

  private reportSettleError(failed: boolean, error: unknown): void {
    this.log(
      'error',
      failed
        ? `replay store could not release a failed delivery; it is retryable after the in-flight TTL (${describe(error)})`
        : `replay store could not mark a handled delivery as done; a replay after the in-flight TTL would run it again (${describe(error)})`,
    );
  }

  /**
   * Everything after the body was read: its checks, the replay check and the
   * handlers, as one answer. What every adapter calls once it has the bytes.
   * Never throws or rejects.
   */
  handleBody(rawBody: Buffer, checked: CheckedHeaders, headers: WebhookHeaders, receivedAt: Date): MaybePromise<Outcome> {
    let outcome: MaybePromise<Outcome>;
    try {
      const event = this.checkBody(rawBody, checked);
      outcome = isPromiseLike(event)
        ? event.then((verified) => this.deliver(verified, rawBody, headers, receivedAt))
        : this.deliver(event, rawBody, headers, receivedAt);
    } catch (error) {
      return this.fail(asVerificationError(error), headers);
    }
    if (!isPromiseLike(outcome)) return outcome;
    return Promise.resolve(outcome).then(undefined, (error: unknown) => this.fail(asVerificationError(error), headers));
  }

  /** The whole pipeline for bytes already in hand. Never rejects for bad input. */
  async receive(input: DeliveryInput): Promise<Outcome> {
    const receivedAt = this.receivedNow();
    const headers = input?.headers ?? {};
    try {
      return await this.handleBody(asBuffer(input?.rawBody), this.checkHeaders(headers), headers, receivedAt);
    } catch (error) {
      return this.fail(asVerificationError(error), headers);
    }
  }

  /** Verification without replay or handlers. @throws WebhookVerificationError */
  async verify(input: DeliveryInput): Promise<MitpoEvent> {
    const headers = input?.headers ?? {};
    const checked = this.checkHeaders(headers);
    const event = await this.checkBody(asBuffer(input?.rawBody), checked);
    if (!isMitpoEventName(event.event)) {
      throw new WebhookVerificationError(
        'invalid_payload',
        `Event type "${event.event.slice(0, 64)}" is not one this version knows; receive() and the middleware pass such events to onAny()`,
      );
    }
    return event as MitpoEvent;
  }

  /** Turns a refusal into its answer and tells onFailure and the logger, neither of which can change it. */
  fail(error: WebhookVerificationError, headers: WebhookHeaders): Outcome {
    for (const handler of this.failureHandlers) {
      try {
        const result = handler(error, { headers });
        if (isPromiseLike(result)) Promise.resolve(result).catch(() => undefined);
      } catch {
        // A throwing onFailure never changes the answer.
      }
    }
    const cause = error.cause === undefined ? '' : ` (cause: ${describe(error.cause)})`;
    this.log(error.status >= 500 ? 'error' : 'warn', `refused delivery: ${error.status} ${error.code}: ${error.message}${cause}`);
    return refusal(error);
  }

  private checkEventAge(timestamp: string): void {
    const ageMs = this.options.now() - eventTimeMs(timestamp);
    if (ageMs > this.options.maxEventAgeSeconds * 1000) {
      throw new WebhookVerificationError(
        'event_too_old',
        `The event's signed timestamp is ${Math.round(ageMs / 1000)} s old, more than maxEventAge (${this.options.maxEventAgeSeconds} s)`,
      );
    }
    if (-ageMs > this.options.toleranceSeconds * 1000) {
      throw new WebhookVerificationError(
        'event_in_future',
        `The event's signed timestamp is ${Math.round(-ageMs / 1000)} s in the future, more than the tolerance (${this.options.toleranceSeconds} s)`,
      );
    }
  }

  private log(level: 'warn' | 'error', message: string): void {
    const logger = this.options.logger;
    if (logger === undefined) return;
    try {
      logger[level](`mitpo-webhooks: ${message}`);
    } catch {
      // Logging must never change an answer.
    }
  }
}

function parseJson(rawBody: Buffer): unknown {
  // JSON is UTF-8 on the wire; decoding invalid bytes to U+FFFD would silently
  // change what MITPO signed, so such a body is refused instead. An all-ASCII body
  // (the usual one) needs no such check and reads the same as latin1, which
  // decodes faster than UTF-8.
  let text: string;
  if (isAscii(rawBody)) text = rawBody.toString('latin1');
  else if (isUtf8(rawBody)) text = rawBody.toString('utf8');
  else throw new WebhookVerificationError('invalid_json', 'The body is not valid UTF-8');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new WebhookVerificationError('invalid_json', 'The body is not valid JSON', { cause: error });
  }
}

const TIMED_OUT = Symbol('timed out');

function handlerTimedOut(ms: number): WebhookVerificationError {
  return new WebhookVerificationError(
    'handler_timeout',
    `The handlers did not finish within handlerTimeout (${ms / 1000} s); the delivery stays claimed until they do, and can be retried`,
  );
}

function handlerFailed(failures: Error[]): WebhookVerificationError {
  const cause = failures.length === 1 ? failures[0] : new AggregateError(failures, `${failures.length} handlers failed`);
  return new WebhookVerificationError(
    'handler_failed',
    'A handler failed; the delivery was not marked as handled and can be retried',
    { cause },
  );
}

function storeUnavailable(detail: string, cause?: unknown): WebhookVerificationError {
  return new WebhookVerificationError(
    'replay_store_unavailable',
    'The replay store could not be reached; the delivery was not handled and can be retried',
    { cause: cause ?? new Error(detail) },
  );
}

export function asVerificationError(error: unknown): WebhookVerificationError {
  if (error instanceof WebhookVerificationError) return error;
  // Anything else is our bug or the environment's, never the sender's: 500, and the
  // delivery stays retryable.
  return new WebhookVerificationError('internal_error', 'The delivery could not be processed; it can be retried', {
    cause: toError(error),
  });
}

function describe(error: unknown): string {
  const err = toError(error);
  return `${err.name}: ${err.message}`;
}
