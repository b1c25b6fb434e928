import { createConnectMiddleware, type ConnectMiddleware, type MiddlewareOptions } from './adapters/connect-middleware';
import { calledWithoutReceiver } from './errors';
import { checkOptionKeys, shownValue } from './option-keys';
import type { DeadLetterHandler, MitpoWebhooksOptions } from './node-types';
import type { DeliveryQueue, DeliveryWorker, WorkerOptions } from './queue/delivery-queue';
import { nodePlatform } from './platform/node-platform';
import type { DeliveryPipeline } from './pipeline/delivery-pipeline';
import { pipelineOf } from './pipeline/pipeline-of';
import { closeTimeoutOf, WebhooksCore } from './receiver/webhooks-core';

/**
 * Receives MITPO webhooks: verifies the signature and freshness, parses the
 * event, stops replays, and runs the handlers registered for it.
 *
 * @example
 * const webhooks = new MitpoWebhooks({ secret: process.env.MITPO_WEBHOOK_SECRET! });
 * webhooks.on('dispatch.completed', async (event) => markDone(event.data.dispatch_id));
 * app.post('/webhooks/mitpo', webhooks.middleware());
 */
export class MitpoWebhooks extends WebhooksCore<Buffer> {
  private readonly workers = new Set<DeliveryWorker>();
  /** The core's pipeline, for what only Node has: the middleware, the workers, the queue's shutdown. */
  private readonly nodePipeline: DeliveryPipeline;
  /** The `queue` option, as validated by the core. */
  private readonly queue: DeliveryQueue | undefined;

  /**
   * @param options - `secret` is required; see {@link MitpoWebhooksOptions} for the rest and their defaults
   * @throws TypeError on a missing, empty, padded or quoted secret (or only its `whsec_` prefix), a
   *   duration that is not a positive number of seconds (or can only be milliseconds), a bad `limit`,
   *   an unknown `replay` value or an unknown option
   */
  constructor(options: MitpoWebhooksOptions) {
    super(options, nodePlatform);
    this.nodePipeline = pipelineOf(this, 'MitpoWebhooks');
    this.queue = options.queue;
  }

  /**
   * With `queue`: told when a delivery becomes a dead letter, after its last
   * attempt or at once when it can never pass (a refused payload, a forged job).
   * `event` is undefined when the delivery could not be read as an event. The
   * delivery is kept, and can be retried with `mitpo-webhooks deliveries retry`.
   * Told just before the queue records it: a worker that dies between the two
   * may have it told again when the delivery is taken up, so key what the
   * handler does by `ctx.deliveryKey`.
   */
  onDeadLetter(handler: DeadLetterHandler): this {
    this.nodePipeline.deadLetters.add(handler);
    return this;
  }


  /**
   * With `queue`: starts a worker that runs the registered handlers for queued
   * deliveries, here or in another process built with the same options. A failed
   * run is retried with backoff (`ctx.attempt` counts from 1); after the last
   * attempt the delivery is kept as a dead letter.
   *
   * @param options - `concurrency`: deliveries handled at once (default 1); `trace`: `'link'`
   *   (default) or `'child'`, how the run's span relates to the delivery's receive span
   * @throws TypeError without a `queue`, once `close()` was called, on an unknown option, a
   *   `concurrency` that is not a whole number from 1, or a `trace` other than those two
   * @example
   * const worker = webhooks.startWorker({ concurrency: 10 });
   */
  startWorker(options: WorkerOptions = {}): DeliveryWorker {
    const queue = this.queue;
    if (queue === undefined) throw new TypeError('mitpo-webhooks: startWorker() needs the queue option (a BullMQDeliveryQueue, PostgresDeliveryQueue or MemoryDeliveryQueue)');
    if (this.nodePipeline.shutdown.closing) throw new TypeError('mitpo-webhooks: startWorker() after close()');
    checkOptionKeys(options, 'startWorker()', ['concurrency', 'trace']);
    const { trace = 'link', ...queueOptions } = options;
    if (trace !== 'link' && trace !== 'child') throw new TypeError(`mitpo-webhooks: startWorker() trace must be 'link' or 'child' (got ${shownValue(trace)})`);
    // Checked here, for every queue: MemoryDeliveryQueue ignored it, so a test passed with a setting production refused.
    const { concurrency = 1 } = queueOptions;
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
      throw new TypeError(`mitpo-webhooks: startWorker() concurrency must be a whole number from 1 (got ${shownValue(concurrency)})`);
    }
    const worker = queue.startWorker((run) => this.nodePipeline.processQueued(run, trace), queueOptions, (error) => this.nodePipeline.failures.workerTrouble(error));
    this.workers.add(worker);
    return {
      close: async (timeoutSeconds: number) => {
        this.workers.delete(worker);
        await worker.close(timeoutSeconds);
      },
    };
  }

  /**
   * Graceful shutdown. New deliveries are answered 503 `shutting_down` (with
   * `Retry-After`) before their body is read; handlers already running, inline
   * or in a worker, are awaited up to `timeout` seconds (default 30). An inline
   * delivery whose handlers did not finish by then is released and answered 503;
   * a worker's unfinished job is left to the queue's recovery of stalled jobs.
   * Then the connections the library opened are closed, also when Redis is
   * unreachable. Resolves once all of that is done; calling it again waits for the same.
   *
   * @throws TypeError when `timeout` is not a positive number of seconds
   */
  override close(options: { timeout?: number | undefined } = {}): Promise<void> {
    const timeout = closeTimeoutOf(options);
    // Workers stop taking jobs at once, not after the deliveries being received:
    // only handlers already running are awaited.
    const workersClosed = this.nodePipeline.shutdown.closing
      ? Promise.resolve()
      : Promise.all([...this.workers].map((worker) => worker.close(timeout))).then(() => this.workers.clear());
    return this.nodePipeline.shutdown.close(timeout, async () => {
      await workersClosed;
      await this.queue?.close();
    });
  }

  /**
   * The Connect/Express middleware. Mount it before any JSON body parser (it
   * needs the raw bytes), on a route or with `{ path }`.
   *
   * @param options - `path`: handle only this path and pass others to `next()`;
   *   `passErrors`: hand refusals to `next(err)` instead of answering them
   * @throws TypeError on an unknown option or a path not starting with `/`
   * @example
   * app.post('/webhooks/mitpo', webhooks.middleware());
   * app.use(webhooks.middleware({ path: '/webhooks/mitpo' }));
   */
  middleware(options: MiddlewareOptions = {}): ConnectMiddleware {
    if (!((this as unknown) instanceof MitpoWebhooks)) {
      throw calledWithoutReceiver('middleware', 'call webhooks.middleware() and mount what it returns, app.post(path, webhooks.middleware())');
    }
    return createConnectMiddleware(this.nodePipeline, options);
  }
}
