import { AsyncLocalStorage } from 'node:async_hooks';
import { readSeconds } from '../duration-option';
import { checkOptionKeys, shownValue } from '../option-keys';
import { parseAnyEvent } from '../events/parse-event';
import type { MitpoEvent, UnknownMitpoEvent } from '../events/schemas';
import type { EventOrder } from '../ordering/event-order';
import {
  FinalDeliveryFailure,
  TamperedDelivery,
  type DeliveryQueue,
  type DeliveryWorker,
  type QueuedDelivery,
  type QueuedDeliveryProcessor,
  type QueueDepth,
  type TakeTurn,
} from '../queue/delivery-queue';

/** The queue whose drain() the code running now was called from, if any. */
const insideDrain = new AsyncLocalStorage<MemoryDeliveryQueue>();

/** Options of {@link MemoryDeliveryQueue}; they mean what they mean for `BullMQDeliveryQueue`. */
export interface MemoryDeliveryQueueOptions {
  /** Runs of a delivery in all, the first included, before it is a dead letter. Default 5. */
  attempts?: number | undefined;
  /** Seconds before the first retry, doubling after each (fractions allowed, e.g. `0.01` in tests). Default 10. */
  backoff?: number | undefined;
}

/** A delivery that ended as a dead letter. */
export interface MemoryDeadLetter {
  deliveryKey: string;
  /** The event, when the stored body could be read as one. */
  event: MitpoEvent | UnknownMitpoEvent | undefined;
  /** Why its last run failed: for a delivery no run could help (one refused as `invalid_payload`, say), a `FinalDeliveryFailure` whose `cause` says why. */
  error: Error;
  /** Runs it had. */
  attempts: number;
}

interface Job {
  delivery: QueuedDelivery;
  state: 'waiting' | 'delayed' | 'active' | 'completed' | 'failed';
  /** Runs started. */
  attempts: number;
  /** How long a handled delivery answers its replays as duplicates. */
  retentionMs: number;
  /**
   * When the queue took it (ms since the epoch), as BullMQ's job timestamp: what the receive time
   * is checked against. In memory that is the moment of receipt, on the receiver's own clock
   * (its `now` option), which nothing can alter here.
   */
  queuedAt: number;
  /** For a completed job: until when its key answers replays as duplicates (ms since the epoch). */
  keptUntil?: number | undefined;
  /** For a delayed job: when it is due again. */
  dueAt?: number | undefined;
  error?: Error | undefined;
}

/**
 * A `DeliveryQueue` in this process's memory, for tests of queued handlers
 * without Redis or Postgres: `new MitpoWebhooks({ secret, queue })` answers
 * `queued` as in production, and `await queue.drain()` runs every queued
 * delivery through the same worker path as BullMQ's workers (the signature
 * checked again, retries with backoff, dead letters, `ctx.attempt`). Nothing
 * runs until `drain()` is called, so a test decides when handlers run.
 *
 * @example
 * const queue = new MemoryDeliveryQueue({ attempts: 3, backoff: 0.01 });
 * const webhooks = new MitpoWebhooks({ secret, queue });
 * webhooks.on('dispatch.completed', handler);
 * webhooks.startWorker();
 * const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret });
 * await webhooks.receive({ rawBody: body, headers }); // 200 queued
 * await queue.drain();
 * expect(queue.deadLetters()).toEqual([]);
 */
export class MemoryDeliveryQueue implements DeliveryQueue {
  /** Runs of a delivery in all, the first included, before it is a dead letter. */
  readonly attempts: number;
  private readonly backoffMs: number;
  private readonly jobs = new Map<string, Job>();
  private processor: QueuedDeliveryProcessor | undefined;
  /** The drain under way, after which a second call drains again. */
  private draining: Promise<void> | undefined;
  /** `ordering`: each resource's applied position. Runs go one at a time, so a resource is never busy. */
  private readonly applied = new Map<string, number>();
  readonly keepsOrder = true;

  /** @throws TypeError on an invalid option */
  constructor(options: MemoryDeliveryQueueOptions = {}) {
    checkOptionKeys(options, 'MemoryDeliveryQueue', ['attempts', 'backoff']);
    const { attempts = 5 } = options;
    if (!Number.isSafeInteger(attempts) || attempts < 1 || attempts > 100) {
      throw new TypeError(`mitpo-webhooks/testing: attempts must be a whole number from 1 to 100 (got ${shownValue(attempts)})`);
    }
    this.attempts = attempts;
    this.backoffMs = readSeconds(options.backoff, { name: 'mitpo-webhooks/testing: backoff', fallback: 10, max: 3600, allowZero: true })! * 1000;
  }

  enqueue(delivery: QueuedDelivery, retentionMs: number): Promise<'queued' | 'duplicate' | 'collision'> {
    const known = this.jobs.get(delivery.deliveryKey);
    if (known !== undefined && !(known.state === 'completed' && known.keptUntil! <= Date.now())) {
      const other = delivery.bodyDigest !== undefined && Buffer.compare(Buffer.from(known.delivery.rawBody), Buffer.from(delivery.rawBody)) !== 0;
      return Promise.resolve(other ? 'collision' : 'duplicate');
    }
    // A delivery the schema refused waits too: the worker refuses it again and reports the dead letter, as on BullMQ.
    const job: Job = { delivery: { ...delivery, rawBody: Buffer.from(delivery.rawBody) }, state: 'waiting', attempts: 0, retentionMs, queuedAt: delivery.receivedAt };
    this.jobs.set(delivery.deliveryKey, job);
    return Promise.resolve('queued');
  }

  /** Keeps the worker path (`webhooks.startWorker()` gives it); deliveries run only in {@link drain}. */
  startWorker(processor: QueuedDeliveryProcessor): DeliveryWorker {
    this.processor = processor;
    return {
      close: () => {
        this.processor = undefined;
        return Promise.resolve();
      },
    };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  depth(): Promise<QueueDepth> {
    const count = (state: Job['state']) => [...this.jobs.values()].filter((job) => job.state === state).length;
    return Promise.resolve({ waiting: count('waiting'), active: count('active'), delayed: count('delayed'), failed: count('failed') });
  }

  /**
   * Runs every queued delivery, one at a time, retrying failed runs after their
   * backoff (waited out for real), until none is waiting or delayed. A call while
   * another drain runs drains again after it.
   * @throws TypeError when no worker was started (`webhooks.startWorker()`)
   */
  drain(): Promise<void> {
    const processor = this.processor;
    if (processor === undefined) {
      return Promise.reject(new TypeError('mitpo-webhooks/testing: drain() needs a worker: call webhooks.startWorker() first'));
    }
    // A handler awaiting drain() would wait for the drain that runs it, for ever: said
    // at once instead of a test that hangs until its timeout.
    if (insideDrain.getStore() === this) {
      return Promise.reject(new TypeError('mitpo-webhooks/testing: drain() was called from a handler it runs, and would wait for itself; call it from the test'));
    }
    // One drain at a time: two would run deliveries side by side, and the second
    // would not count the first's delivery under way as one left. A call while one
    // runs drains again after it, for a delivery queued as the first was ending.
    if (this.draining !== undefined) return this.draining.then(() => this.drain());
    this.draining = insideDrain.run(this, () => this.runAll(processor)).finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  private async runAll(processor: QueuedDeliveryProcessor): Promise<void> {
    // The due time a wait was for: once waited out it counts as reached whatever the clock
    // says, so a test that froze `Date` (timers real) still sees its retries run.
    let waitedUntil = -Infinity;
    for (;;) {
      const now = Math.max(Date.now(), waitedUntil);
      const due = [...this.jobs.values()].find((job) => job.state === 'waiting' || (job.state === 'delayed' && job.dueAt! <= now));
      if (due !== undefined) {
        await this.run(due, processor);
        continue;
      }
      const delayed = [...this.jobs.values()].filter((job) => job.state === 'delayed');
      if (delayed.length === 0) return;
      const next = Math.min(...delayed.map((job) => job.dueAt!));
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - Date.now())));
      waitedUntil = next;
    }
  }

  /** What ended as a dead letter, oldest first. */
  deadLetters(): MemoryDeadLetter[] {
    return [...this.jobs.values()]
      .filter((job) => job.state === 'failed')
      .map((job) => ({ deliveryKey: job.delivery.deliveryKey, event: readEvent(job.delivery.rawBody), error: job.error!, attempts: job.attempts }));
  }

  private async run(job: Job, processor: QueuedDeliveryProcessor): Promise<void> {
    job.state = 'active';
    job.attempts += 1;
    const attempt = job.attempts;
    let turn: EventOrder | undefined;
    const takeTurn: TakeTurn = (order) => {
      const applied = this.applied.get(order.resource);
      if (applied !== undefined && applied > order.position) return Promise.resolve({ stale: applied });
      turn = order;
      return Promise.resolve('taken');
    };
    try {
      await processor({ delivery: job.delivery, queuedAt: job.queuedAt, attempt, lastAttempt: attempt >= this.attempts, takeTurn });
      job.state = 'completed';
      job.keptUntil = Date.now() + job.retentionMs;
      if (turn !== undefined && !((this.applied.get(turn.resource) ?? -Infinity) > turn.position)) this.applied.set(turn.resource, turn.position);
    } catch (error) {
      job.error = error instanceof Error ? error : new Error(String(error));
      if (error instanceof TamperedDelivery) {
        this.jobs.delete(job.delivery.deliveryKey);
        return;
      }
      if (attempt >= this.attempts || error instanceof FinalDeliveryFailure) {
        job.state = 'failed';
      } else {
        job.state = 'delayed';
        job.dueAt = Date.now() + this.backoffMs * 2 ** (attempt - 1);
      }
    }
  }
}

function readEvent(rawBody: Uint8Array): MitpoEvent | UnknownMitpoEvent | undefined {
  try {
    return parseAnyEvent(JSON.parse(Buffer.from(rawBody).toString('utf8')));
  } catch {
    return undefined;
  }
}
