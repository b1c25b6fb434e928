import { createFetchHandler, type FetchHandler } from '../adapters/fetch-handler';
import type { WebhookResponse } from '../answers';
import { requestFromInput, type DeliveryInput } from '../delivery-input';
import { readSeconds } from '../duration-option';
import { calledWithoutReceiver } from '../errors';
import { checkOptionKeys } from '../option-keys';
import type { MitpoEvent, MitpoEventName } from '../events/schemas';
import { resolveOptions } from '../options';
import { DeliveryPipeline } from '../pipeline/delivery-pipeline';
import type { FailureHandler } from '../pipeline/failure-report';
import type { StaleHandler } from '../ordering/stale-events';
import { keepPipeline } from '../pipeline/pipeline-of';
import type { Platform } from '../platform/platform';
import { EventRouter } from '../router/event-router';
import type { AnyEventHandler, EventHandler, HandlerErrorHandler } from '../router/types';

/**
 * The receiver on any runtime: one class behind Node's `MitpoWebhooks` and the
 * one in `mitpo-webhooks/web`, so both have the same options, checks, codes,
 * handlers and answers, and whatever is added here reaches both. What differs
 * comes in through the `Platform` (cryptography, the type of bytes) and through
 * the subclasses (Node's middleware and queue workers).
 *
 * `Bytes` is the type handlers get `ctx.rawBody` as: `Buffer` on Node, `Uint8Array` on the web.
 */
export class WebhooksCore<Bytes extends Uint8Array> {
  private readonly router = new EventRouter();
  private readonly pipeline: DeliveryPipeline;

  /**
   * Made by each runtime's `MitpoWebhooks`, with that runtime's platform. A
   * subclass finds the pipeline with `pipelineOf(this, where)`, as the framework entry
   * points do, so nothing internal shows in the public types.
   */
  protected constructor(options: unknown, platform: Platform) {
    this.pipeline = new DeliveryPipeline(resolveOptions(options, platform), this.router, platform);
    keepPipeline(this, this.pipeline);
  }

  /**
   * Runs `handler` for every verified event of the given type(s), its `event`
   * narrowed to that type. Sync or async; the answer waits for it, and a throw
   * or rejection answers 500 `handler_failed` so MITPO retries. A function
   * already registered for a type is not added again (it runs once per delivery).
   *
   * @throws TypeError on an event name this version does not know (use `onAny` for those)
   */
  on<N extends MitpoEventName>(name: N | readonly N[], handler: EventHandler<N, Bytes>): this {
    this.router.on(name, handler);
    return this;
  }

  /** Runs `handler` for every verified event, including types this version does not know; once, however often it is added. */
  onAny(handler: AnyEventHandler<Bytes>): this {
    this.router.onAny(handler);
    return this;
  }

  /** Told when a handler throws or rejects. It cannot change the answer (still 500). */
  onError(handler: HandlerErrorHandler<Bytes>): this {
    this.router.onError(handler);
    return this;
  }

  /**
   * Told once for every delivery answered with a non-2xx, with the error (its
   * `code` and `status` those of the answer) and the request's headers: for logs
   * and metrics. For an authentic delivery (valid signature) the context also
   * carries `authenticated: true`, the `rawBody`, and for `invalid_payload` the
   * schema's `issues`. It cannot change the answer.
   */
  onFailure(handler: FailureHandler<Bytes>): this {
    this.pipeline.failures.add(handler);
    return this;
  }

  /**
   * With `ordering`: told of each stale event, skipped (its handlers did not run,
   * the answer was 200 `stale`) because a later event of its resource was
   * already applied; `latest` is that event's position. It cannot change the answer.
   */
  onStale(handler: StaleHandler<Bytes>): this {
    this.pipeline.stale.listeners.add(handler);
    return this;
  }

  /** Removes a handler added with `on` (or with `onAny`, by passing `'*'`). */
  removeListener<N extends MitpoEventName>(name: N | readonly N[] | '*', handler: EventHandler<N, Bytes> | AnyEventHandler<Bytes>): this {
    this.router.removeListener(name, handler);
    return this;
  }

  /**
   * Graceful shutdown. New deliveries are answered 503 `shutting_down` (with
   * `Retry-After`) before their body is read; handlers already running are
   * awaited up to `timeout` seconds (default 30). A delivery whose handlers did
   * not finish by then is released and answered 503. Resolves once all of that
   * is done; calling it again waits for the same.
   *
   * @throws TypeError when `timeout` is not a positive number of seconds
   */
  close(options: { timeout?: number | undefined } = {}): Promise<void> {
    const timeout = closeTimeoutOf(options);
    return this.pipeline.shutdown.close(timeout, () => Promise.resolve());
  }

  /**
   * A handler for Fetch API runtimes (Next.js route handlers, Hono, Bun, Deno,
   * Cloudflare Workers): the same checks, codes, statuses and envelope as the
   * middleware. It does not filter by path; any method but POST answers 405
   * with `Allow: POST`.
   *
   * @example
   * export const POST = webhooks.fetchHandler(); // app/api/webhooks/mitpo/route.ts
   */
  fetchHandler(): FetchHandler {
    if (!((this as unknown) instanceof WebhooksCore)) throw calledWithoutReceiver('fetchHandler', 'call webhooks.fetchHandler() and serve what it returns');
    return createFetchHandler(this.pipeline);
  }

  /**
   * Every check except replay; runs no handler and leaves the replay store untouched.
   * Once `close()` was called it rejects with `shutting_down`, as the receiver answers.
   *
   * @returns the verified event
   * @throws WebhookVerificationError naming the first check that failed (an event type this version does not know is `invalid_payload`)
   */
  verify(input: DeliveryInput): Promise<MitpoEvent> {
    if (!((this as unknown) instanceof WebhooksCore)) throw calledWithoutReceiver('verify', 'call it on the receiver, webhooks.verify(input)');
    return this.pipeline.verify(requestFromInput(input));
  }

  /**
   * Verifies, checks for replay and runs the handlers: what the middleware does,
   * for any framework. Never rejects for bad input. A `rawBody` that is missing or
   * not bytes (the framework parsed the body) answers 500 `body_already_parsed`.
   *
   * @returns the status and the JSON body to answer with
   */
  async receive(input: DeliveryInput): Promise<WebhookResponse> {
    if (!((this as unknown) instanceof WebhooksCore)) throw calledWithoutReceiver('receive', 'call it on the receiver, webhooks.receive(input)');
    const { status, body } = await this.pipeline.process(requestFromInput(input));
    return { status, body };
  }
}

/** `close()`'s options, checked: its `timeout` in seconds (default 30). @throws TypeError */
export function closeTimeoutOf(options: unknown): number {
  // A signal's name is no options: `process.on('SIGTERM', webhooks.close.bind(webhooks))` hands it
  // to close(), and a shutdown must not throw there. Anything else but an object is a TypeError.
  if (typeof options === 'string') return closeTimeoutOf({});
  const { timeout } = checkOptionKeys(options, 'close()', ['timeout']);
  return readSeconds(timeout, { name: 'close() timeout', fallback: 30, max: 3600 })!;
}
