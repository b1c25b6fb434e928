import { DUPLICATE, QUEUED, refusal, SUCCESS, type Outcome } from '../answers';
import { bodyAlreadyParsed, payloadTooLarge, type BodyReadOptions } from '../body/body-errors';
import { rawBytesOf } from '../body/raw-bytes';
import { toError, WebhookVerificationError } from '../errors';
import { checkEventHeader } from '../events/event-header';
import { parseAnyEvent } from '../events/parse-event';
import { parseJson } from '../events/parse-json';
import { isMitpoEventName, type MitpoEvent, type UnknownMitpoEvent } from '../events/schemas';
import { checkEventAge } from '../freshness/event-age';
import { checkSentAt } from '../freshness/sent-at';
import { checkContentType, declaredContentLength } from '../headers/content-type';
import { toDeliveryHeaders, type DeliveryHeaders, type WebhookHeaders } from '../headers/delivery-headers';
import type { ResolvedOptions } from '../options';
import { DeliveryClaim } from '../replay/delivery-claim';
import { deliveryKeyOf } from '../replay/delivery-key';
import type { EventRouter } from '../router/event-router';
import type { DeliveryContext } from '../router/types';
import { readSignatureHeader } from '../signature/signature-header';
import { matchesAnyKey } from '../signature/signing-key';
import { sanitizeText } from '../text/sanitize-text';
import type { QueuedDelivery, QueuedRun } from '../queue/delivery-queue';
import { FailureReport, type DeliveryTrace } from './failure-report';
import { Shutdown, shuttingDown } from './shutdown';
import type { DeliveryTelemetry } from '../telemetry/delivery-telemetry';
import { Telemetry } from '../telemetry/telemetry';

/** A delivery as `verify()` and `receive()` take it. */
export interface DeliveryInput {
  /** The body exactly as received: bytes, or a string taken as UTF-8. */
  rawBody: Buffer | Uint8Array | string;
  /** The request headers; names are matched without regard to case. */
  headers: WebhookHeaders;
}

/**
 * What an adapter hands the pipeline: how to read this request's headers and
 * bytes. Everything else (the order of checks, the answer) is the pipeline's.
 */
export interface DeliveryRequest {
  /** The HTTP method, when the adapter owns the route (anything but POST is 405); undefined to skip the check. */
  method: string | undefined;
  /** The headers, as a plain object with lower-case names. */
  headers: DeliveryHeaders;
  /**
   * Reads the raw body within the limit and the timeout.
   * @throws WebhookVerificationError when it cannot (413, 408, 400, or 500 `body_already_parsed`)
   */
  readBody(options: BodyReadOptions): Promise<Buffer>;
}

/**
 * The one path every delivery takes, under every adapter. `process` holds the
 * order of checks from the contract and nothing else; each check lives in its
 * own module. No handler runs unless every check before it passed.
 */
export class DeliveryPipeline {
  readonly failures: FailureReport;
  readonly shutdown = new Shutdown();
  private readonly telemetry = new Telemetry();
  private deadLetterHandlers: readonly DeadLetterHandler[] = [];

  constructor(
    private readonly options: ResolvedOptions,
    private readonly router: EventRouter,
  ) {
    this.failures = new FailureReport(options.logger, options.now);
  }

  /**
   * Verifies, then checks for replay and runs the handlers, or (with a queue)
   * queues the delivery for the workers. Never rejects: every failure is an answer.
   */
  process(request: DeliveryRequest): Promise<Outcome> {
    const telemetry = this.telemetry.startDelivery('mitpo.webhook.receive');
    const trace: DeliveryTrace = { headers: request.headers, startedAt: this.options.now(), ...(telemetry && { telemetry }) };
    // Refused before anything is read, so a shutdown is never held up by a new body.
    if (this.shutdown.closing) return Promise.resolve(this.answered(this.refuse(shuttingDown('it takes no new deliveries'), trace), trace));
    const underWay = telemetry === undefined ? this.processUnderWay(request, trace) : telemetry.within(() => this.processUnderWay(request, trace));
    return this.shutdown.track(underWay.then((outcome) => this.answered(outcome, trace)));
  }

  /** Tells telemetry how the delivery was answered. */
  private answered(outcome: Outcome, trace: DeliveryTrace): Outcome {
    trace.telemetry?.end({
      outcome: outcome.error?.code ?? (outcome === DUPLICATE ? 'duplicate' : outcome === QUEUED ? 'queued' : 'success'),
      status: outcome.status,
      event: trace.event,
      deliveryKey: trace.deliveryKey,
    });
    return outcome;
  }

  private async processUnderWay(request: DeliveryRequest, trace: DeliveryTrace): Promise<Outcome> {
    try {
      const { event, rawBody } = await this.verified(request, trace);
      if (this.options.queue !== undefined) return await this.enqueue(event, rawBody, trace);
      return await this.deliver(event, rawBody, trace);
    } catch (error) {
      const refused = asVerificationError(error);
      if (refused.code === 'invalid_payload' && trace.rawBody !== undefined) await this.keepRefused(refused, trace);
      return this.refuse(refused, trace);
    }
  }

  private refuse(error: WebhookVerificationError, trace: DeliveryTrace): Outcome {
    this.failures.report(error, trace);
    return refusal(error);
  }

  /** With a queue: every check passed, so the delivery is queued durably and answered at once. */
  private async enqueue(event: MitpoEvent | UnknownMitpoEvent, rawBody: Buffer, trace: DeliveryTrace): Promise<Outcome> {
    const deliveryKey = this.deliveryKeyOf(event, rawBody);
    trace.deliveryKey = deliveryKey;
    let queued: 'queued' | 'duplicate';
    try {
      queued = await this.options.queue!.enqueue(this.queuedDelivery(rawBody, deliveryKey, trace), this.options.retentionMs);
    } catch (error) {
      throw new WebhookVerificationError(
        'queue_unavailable',
        'The delivery queue could not take the delivery; it was not queued and can be retried',
        { cause: error },
      );
    }
    return queued === 'queued' ? QUEUED : DUPLICATE;
  }

  /**
   * With a queue, an authentic delivery the schema refused is still answered 400,
   * and kept among the dead letters with the schema's issues: a real MITPO event
   * this version cannot read is never lost. Retrying it validates it again.
   */
  private async keepRefused(error: WebhookVerificationError, trace: DeliveryTrace): Promise<void> {
    const queue = this.options.queue;
    if (queue === undefined) return;
    const rawBody = trace.rawBody!;
    const issues = (error.cause as { issues?: unknown } | undefined)?.issues;
    const delivery = this.queuedDelivery(rawBody, deliveryKeyOf(rawBody), trace);
    delivery.refused = { code: error.code, message: error.message, ...(issues === undefined ? {} : { issues }) };
    try {
      await queue.enqueue(delivery, this.options.retentionMs);
    } catch (cause) {
      this.failures.storeTrouble('mitpo-webhooks: the queue could not keep a refused authentic delivery as a dead letter', cause, trace);
    }
  }

  private queuedDelivery(rawBody: Buffer, deliveryKey: string, trace: DeliveryTrace): QueuedDelivery {
    const headers: Record<string, string> = {};
    for (const name of QUEUED_HEADERS) {
      const value = trace.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    const traceparent = trace.telemetry?.traceparent();
    return { deliveryKey, rawBody, headers, receivedAt: trace.startedAt, ...(traceparent && { traceparent }) };
  }

  /**
   * One run of a queued delivery, in a worker. Redis is not trusted, so the
   * signature is checked again and the event parsed against this version's
   * schema; freshness is not (it was checked on arrival, and a retry may come
   * hours later). A delivery that can never pass is a dead letter at once.
   */
  async processQueued(run: QueuedRun): Promise<void> {
    const telemetry = this.telemetry.startDelivery('mitpo.webhook.process', run.delivery.traceparent);
    if (telemetry === undefined) return this.runQueued(run, undefined);
    let outcome = 'success';
    let event: string | undefined;
    try {
      await telemetry.within(() => this.runQueued(run, telemetry, (name) => (event = name)));
    } catch (error) {
      outcome = (error as { code?: string }).code ?? 'handler_failed';
      throw error;
    } finally {
      telemetry.end({ outcome, status: outcome === 'success' ? 200 : 500, event, deliveryKey: run.delivery.deliveryKey });
    }
  }

  private async runQueued(
    { delivery, attempt, lastAttempt }: QueuedRun,
    telemetry: DeliveryTelemetry | undefined,
    verified: (event: string) => void = () => undefined,
  ): Promise<void> {
    const { rawBody, headers, deliveryKey } = delivery;
    const ctx: DeliveryContext = { headers, rawBody, deliveryKey, receivedAt: new Date(delivery.receivedAt), attempt };
    let event: MitpoEvent | UnknownMitpoEvent;
    try {
      const digest = readSignatureHeader(headers['x-mitpo-signature']);
      if (!matchesAnyKey(await this.options.secrets(), rawBody, digest)) {
        throw new WebhookVerificationError('invalid_signature', 'The queued delivery does not match its signature under the configured secret');
      }
      event = parseAnyEvent(parseJson(rawBody));
    } catch (error) {
      const refused = asVerificationError(error);
      // A secret that could not be resolved is the only refusal that a later run can overcome.
      if (refused.code === 'secret_unavailable' && !lastAttempt) throw refused;
      this.reportDeadLetter(undefined, ctx, refused);
      throw Object.assign(refused, { retryable: false });
    }
    verified(event.event);
    const failures = await this.router.dispatch(event, ctx, aroundHandlers(telemetry, event.event));
    if (failures.length === 0) return;
    // The queue keeps this message as the job's last error, for `deliveries show`: it names the handlers' own errors.
    const failed = new Error(`${handlerFailed(failures).message}: ${failures.map((failure) => failure.message).join('; ')}`, {
      cause: failures.length === 1 ? failures[0] : new AggregateError(failures),
    });
    if (lastAttempt) this.reportDeadLetter(event, ctx, failed);
    throw failed;
  }

  /** Registers a handler told of every delivery that became a dead letter. */
  onDeadLetter(handler: unknown): void {
    if (typeof handler !== 'function') {
      throw new TypeError(`mitpo-webhooks: onDeadLetter() needs a function as its handler (got ${typeof handler})`);
    }
    this.deadLetterHandlers = [...this.deadLetterHandlers, handler as DeadLetterHandler];
  }

  private reportDeadLetter(event: MitpoEvent | UnknownMitpoEvent | undefined, ctx: DeliveryContext, error: Error): void {
    for (const handler of this.deadLetterHandlers) {
      try {
        Promise.resolve(handler(event, ctx, error)).catch(() => undefined);
      } catch {
        // A throwing onDeadLetter changes nothing: the delivery is kept all the same.
      }
    }
  }

  /**
   * Every check but replay, in the contract's order; the checks that need only
   * headers run before a byte of the body is read.
   * @throws WebhookVerificationError naming the first check that failed
   */
  private async verified(
    request: DeliveryRequest,
    trace: DeliveryTrace,
  ): Promise<{ event: MitpoEvent | UnknownMitpoEvent; rawBody: Buffer }> {
    const { headers } = request;
    const { options } = this;
    if (request.method !== undefined && request.method !== 'POST') throw methodNotAllowed(request.method);
    checkContentType(headers);
    const digest = readSignatureHeader(headers['x-mitpo-signature']);
    checkSentAt(headers['x-mitpo-timestamp'], options.now(), options.toleranceSeconds);

    const rawBody = await request.readBody({
      limit: options.limit,
      timeoutSeconds: options.bodyTimeoutSeconds,
      contentLength: declaredContentLength(headers),
    });

    if (!matchesAnyKey(await options.secrets(), rawBody, digest)) {
      throw new WebhookVerificationError(
        'invalid_signature',
        'X-MITPO-Signature does not match the body under the configured secret: check that the secret is this ' +
          "endpoint's and that nothing re-encoded the body before verification",
      );
    }
    trace.rawBody = rawBody;
    const event = parseAnyEvent(parseJson(rawBody));
    checkEventHeader(headers['x-mitpo-event'], event.event);
    checkEventAge(event.timestamp, options.now(), options.maxEventAgeSeconds, options.toleranceSeconds);
    trace.event = event.event;
    return { event, rawBody };
  }

  /** Replay check, then the handlers, then the claim settled. @throws WebhookVerificationError */
  private async deliver(event: MitpoEvent | UnknownMitpoEvent, rawBody: Buffer, trace: DeliveryTrace): Promise<Outcome> {
    const { options } = this;
    const deliveryKey = this.deliveryKeyOf(event, rawBody);
    trace.deliveryKey = deliveryKey;
    if (this.shutdown.pastDeadline) throw shuttingDown('the delivery was not handled');
    const ctx: DeliveryContext = { headers: trace.headers, rawBody, deliveryKey, receivedAt: new Date(trace.startedAt), attempt: 1 };
    if (options.replay === undefined) return this.handle(event, ctx, undefined, trace);

    let claim: Awaited<ReturnType<typeof DeliveryClaim.take>>;
    try {
      claim = await DeliveryClaim.take(options.replay, deliveryKey, options.inFlightTtlMs, (message, error) =>
        this.failures.storeTrouble(`mitpo-webhooks: ${message}`, error, trace),
      );
    } catch (error) {
      throw storeUnavailable(error);
    }
    if (claim === 'done') return DUPLICATE;
    if (claim === 'in_flight') {
      throw new WebhookVerificationError('in_flight', 'This delivery is being handled right now by another request; retry later');
    }
    return this.handle(event, ctx, claim, trace);
  }

  /** Runs the handlers and settles the claim: completed on success, released on failure so a retry runs them again. */
  private async handle(
    event: MitpoEvent | UnknownMitpoEvent,
    ctx: DeliveryContext,
    claim: DeliveryClaim | undefined,
    trace: DeliveryTrace,
  ): Promise<Outcome> {
    const handling = this.router.dispatch(event, ctx, aroundHandlers(trace.telemetry, event.event));
    let failures: Error[] | typeof TIMED_OUT | typeof SHUT_DOWN;
    try {
      failures = await this.withinHandlerTimeout(handling);
    } catch (error) {
      // The router reports every handler failure as a value; reaching here is our
      // bug, and the delivery must stay retryable all the same.
      await this.settle(claim, [toError(error)], trace);
      throw error;
    }
    if (failures === SHUT_DOWN) {
      // Released, never completed: MITPO's retry runs the handlers again elsewhere or later.
      await this.settle(claim, [new Error('abandoned at shutdown')], trace);
      throw shuttingDown('the handlers did not finish before it closed, and the delivery was released');
    }
    if (failures === TIMED_OUT) {
      // The claim stays (and is renewed) until the handlers settle, so a retry meanwhile is 409, never a second run.
      handling.then(
        (late) => this.settle(claim, late, trace),
        (error: unknown) => this.settle(claim, [toError(error)], trace),
      );
      throw new WebhookVerificationError(
        'handler_timeout',
        `The handlers did not finish within handlerTimeout (${this.options.handlerTimeoutMs! / 1000} s); ` +
          'the delivery stays claimed until they do, and can be retried',
      );
    }
    await this.settle(claim, failures, trace);
    if (failures.length > 0) throw handlerFailed(failures);
    return SUCCESS;
  }

  /** The handlers' failures, or what came first: `handlerTimeout`, or the shutdown's deadline. */
  private async withinHandlerTimeout(handling: Promise<Error[]>): Promise<Error[] | typeof TIMED_OUT | typeof SHUT_DOWN> {
    const ms = this.options.handlerTimeoutMs;
    if (ms === undefined) return this.shutdown.race(handling, SHUT_DOWN);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), ms);
    });
    try {
      return await this.shutdown.race(Promise.race([handling, timedOut]), SHUT_DOWN);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A store failure here is logged, never answered: a failed complete() still answers 200, since the handlers did succeed. */
  private async settle(claim: DeliveryClaim | undefined, failures: Error[], trace: DeliveryTrace): Promise<void> {
    if (claim === undefined) return;
    try {
      if (failures.length > 0) await claim.release();
      else await claim.complete(this.options.retentionMs);
    } catch (error) {
      this.failures.storeTrouble(
        failures.length > 0
          ? 'mitpo-webhooks: the replay store could not release a failed delivery; it is retryable once the in-flight TTL lapses'
          : 'mitpo-webhooks: the replay store could not mark a handled delivery as done; a replay after the in-flight TTL would run it again',
        error,
        trace,
      );
    }
  }

  private deliveryKeyOf(event: MitpoEvent | UnknownMitpoEvent, rawBody: Buffer): string {
    const custom = this.options.deliveryKey;
    if (custom === undefined) return deliveryKeyOf(rawBody);
    const key: unknown = custom(event, rawBody);
    if (typeof key !== 'string' || key === '') {
      throw new TypeError(`mitpo-webhooks: the deliveryKey option returned ${typeof key === 'string' ? 'an empty string' : typeof key}; it must return a non-empty string`);
    }
    return key;
  }

  /** Every check but replay, for bytes in hand. @throws WebhookVerificationError */
  async verify(input: DeliveryInput): Promise<MitpoEvent> {
    const trace: DeliveryTrace = { headers: toDeliveryHeaders(input?.headers), startedAt: this.options.now() };
    const { event } = await this.verified(requestFromInput(input, trace.headers), trace);
    if (!isMitpoEventName(event.event)) {
      throw new WebhookVerificationError(
        'invalid_payload',
        `Event type "${sanitizeText(event.event, 64)}" is not one this version knows; receive() and the middleware pass such events to onAny()`,
      );
    }
    return event as MitpoEvent;
  }

  /** The whole pipeline for bytes already in hand. Never rejects. */
  receive(input: DeliveryInput): Promise<Outcome> {
    return this.process(requestFromInput(input, toDeliveryHeaders(input?.headers)));
  }
}

/** `receive()` and `verify()` have the bytes already; missing ones are the server's mistake (500), not the sender's. */
function requestFromInput(input: DeliveryInput | undefined, headers: DeliveryHeaders): DeliveryRequest {
  return {
    method: undefined,
    headers,
    async readBody({ limit }) {
      const bytes = rawBytesOf(input?.rawBody);
      if (bytes === undefined) throw bodyAlreadyParsed('receive');
      if (bytes.byteLength > limit) throw payloadTooLarge(limit);
      return bytes;
    },
  };
}

/** Each handler run in its own span, when telemetry records. */
function aroundHandlers(telemetry: DeliveryTelemetry | undefined, event: string) {
  return telemetry === undefined ? undefined : (run: () => unknown) => telemetry.handle(event, run);
}

const TIMED_OUT = Symbol('timed out');
const SHUT_DOWN = Symbol('shut down');

/** What a queue keeps of the request: the type and what is needed to verify the bytes again. */
const QUEUED_HEADERS = ['content-type', 'x-mitpo-signature', 'x-mitpo-timestamp', 'x-mitpo-event'] as const;

/** Told when a queued delivery becomes a dead letter; `event` is undefined when it could not be read. */
export type DeadLetterHandler = (event: MitpoEvent | UnknownMitpoEvent | undefined, ctx: DeliveryContext, error: Error) => unknown;

/** The 405 every adapter answers to a method other than POST, with the `Allow` header it must carry. */
function methodNotAllowed(method: string): WebhookVerificationError {
  return new WebhookVerificationError(
    'method_not_allowed',
    `MITPO delivers webhooks with POST; ${sanitizeText(method, 16)} is not allowed here`,
    { headers: { allow: 'POST' } },
  );
}

function handlerFailed(failures: Error[]): WebhookVerificationError {
  const cause = failures.length === 1 ? failures[0] : new AggregateError(failures, `${failures.length} handlers failed`);
  return new WebhookVerificationError('handler_failed', 'A handler failed; the delivery was not marked as handled and can be retried', {
    cause,
  });
}

function storeUnavailable(cause: unknown): WebhookVerificationError {
  return new WebhookVerificationError(
    'replay_store_unavailable',
    'The replay store could not be reached; the delivery was not handled and can be retried',
    { cause },
  );
}

/** Anything but a refusal is our bug or the environment's, never the sender's: 500, and the delivery stays retryable. */
function asVerificationError(error: unknown): WebhookVerificationError {
  if (error instanceof WebhookVerificationError) return error;
  return new WebhookVerificationError('internal_error', 'The delivery could not be processed; it can be retried', {
    cause: toError(error),
  });
}
