import { randomUUID } from 'node:crypto';
import { dirname } from 'node:path';
import { DelayedError, Queue, RedisConnection, UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { EventOrder } from '../ordering/event-order';
import { readSeconds } from '../duration-option';
import { checkOptionKeys, shownValue } from '../option-keys';
import { toError } from '../errors';
import {
  DeferredDelivery,
  FinalDeliveryFailure,
  TamperedDelivery,
  type DeliveryQueue,
  type DeliveryWorker,
  type QueuedDelivery,
  type QueuedDeliveryProcessor,
  type QueueDepth,
  type TakeTurn,
  type WorkerOptions,
} from '../queue/delivery-queue';
import { bufferOf, sha256HexOf } from '../platform/node-platform';
import { jobIdOf } from './job-id';
import { attemptsRun, deferralsOf, startedRuns } from './started-runs';
import { withTimeout } from '../with-timeout';
import { PendingEnqueues, type EnqueueResult } from '../queue/pending-enqueues';
import { resourceKeys, staleAnswer } from '../redis/resource-keys';

/** Options of {@link BullMQDeliveryQueue}. */
export interface BullMQDeliveryQueueOptions {
  /** Where Redis is: `{ url }`, an ioredis client or a node-redis client, as BullMQ takes it. */
  connection: ConnectionOptions;
  /** The queue's name; the receiver and its workers must agree on it. Default `'mitpo-webhooks'`. */
  name?: string | undefined;
  /**
   * Runs of a delivery in all, the first included, before it is a dead letter.
   * Set by the receiver: it travels with each job. Default 5.
   */
  attempts?: number | undefined;
  /** Seconds before the first retry, doubling after each; set by the receiver, like `attempts`. Default 10. */
  backoff?: number | undefined;
  /** Seconds Redis has to acknowledge a delivery before the receiver answers 503 `queue_unavailable`. Default 2. */
  enqueueTimeout?: number | undefined;
  /**
   * Seconds a worker holds a running delivery without renewing it; a worker that
   * died has its delivery run by another two to three times this long after, once
   * BullMQ's checks for stalled jobs (one every `lockDuration`) find the lock gone (up
   * to `attempts` times; past that the job is kept among the failed ones). Set by the
   * workers. Default 30.
   */
  lockDuration?: number | undefined;
  /** Seconds a dead letter is kept in Redis before BullMQ removes it. Default 2 592 000 (30 days). */
  deadLetterRetention?: number | undefined;
  /**
   * Bytes of deliveries waiting for Redis to acknowledge them, at most, in this
   * process; past it a delivery is answered 503 `queue_unavailable` (MITPO
   * retries), so a hung Redis cannot make waiting requests pile up in memory.
   * Default 33 554 432 (32 MiB).
   */
  maxPendingBytes?: number | undefined;
}

/** What a job holds: the delivery, its raw body as base64. */
interface JobData {
  /** The body's hex SHA-256, kept when the key is the app's own. */
  bodyDigest?: string | undefined;
  /** Set by `deliveries retry`. */
  retriedByOperator?: boolean | undefined;
  /** The runs counted before `deliveries retry` reset BullMQ's count (see `attemptsRun`). */
  runsBeforeRetry?: number | undefined;
  /** Runs put off because their resource was busy (`ordering`): started, but not attempts. */
  deferrals?: number | undefined;
  deliveryKey: string;
  body: string;
  headers: Record<string, string>;
  receivedAt: number;
  refused?: QueuedDelivery['refused'];
  traceparent?: string | undefined;
}

const JOB_NAME = 'mitpo-delivery';
/** The most `attempts` a job can have. */
const MOST_ATTEMPTS = 100;

/** How long a run whose resource is busy (`ordering`) first waits before it tries again, and at most. */
const DEFER_MS = 250;
const MAX_DEFER_MS = 10_000;

// `ordering` in the queue's Redis. KEYS: the resource's applied position, its holder.
// Taking a turn reads the applied position and sets the holder in one step, so of
// two workers taking two events of one resource, exactly one runs, and never a stale one.
const TAKE_TURN = `
local applied = redis.call('GET', KEYS[1])
if applied and tonumber(applied) > tonumber(ARGV[3]) then return 'stale:' .. applied end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 'taken' end
if redis.call('GET', KEYS[2]) == ARGV[1] then return 'taken' end
return 'busy'
`;

// Recording the applied position frees the turn in the same step. The position
// is kept at least as long as it already was (see KEEP_POSITION).
const APPLIED = `
local applied = redis.call('GET', KEYS[1])
if not applied or tonumber(applied) < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', math.max(tonumber(ARGV[3]), redis.call('PTTL', KEYS[1])))
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
`;

// A dead letter keeps its resource's applied position (or, with none yet, one
// below every event's) as long as the dead letter is kept: an operator may retry
// it after maxEventAge, past which positions are otherwise forgotten, and it must
// then still be stale if a later event of its resource was applied meanwhile.
const KEEP_POSITION = `
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return redis.call('SET', KEYS[1], '0', 'PX', ARGV[1]) end
if ttl >= 0 and ttl < tonumber(ARGV[1]) then return redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0
`;

const FREE_TURN = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

const RENEW_TURN = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

/**
 * Durable processing on BullMQ: the receiver verifies a delivery, queues it and
 * answers at once; workers (in this process or others) run the handlers with
 * retries, and a delivery that fails its last attempt is kept as a dead letter.
 *
 * @example
 * const queue = new BullMQDeliveryQueue({ connection: { url: process.env.REDIS_URL! }, name: 'mitpo' });
 * const webhooks = new MitpoWebhooks({ secret, queue });
 * webhooks.startWorker({ concurrency: 10 });
 */
export class BullMQDeliveryQueue implements DeliveryQueue {
  /** The BullMQ queue's name, as given (default `mitpo-webhooks`). */
  readonly name: string;
  /** Runs of a delivery in all, the first included, before it is a dead letter. */
  readonly attempts: number;
  readonly keepsOrder = true;
  // Private fields, not TypeScript's `private` (ordinary properties at run time): the connection,
  // and BullMQ's Queue holding it, may carry a Redis password, which logging the queue would print.
  readonly #connection: ConnectionOptions;
  private readonly backoffMs: number;
  private readonly enqueueTimeoutMs: number;
  private readonly lockDurationMs: number;
  private readonly deadLetterRetentionSeconds: number;
  /**
   * BullMQ's Queue, read through queue(). BullMQ sets a connection up once, from the
   * Queue's constructor (ready, then an INFO for Redis's version), and every command
   * waits for that: failed once (Redis stalled past the command timeout just then, a
   * `lazyConnect` client that found Redis down), the Queue fails every command for
   * good. So one whose set-up failed is replaced when next used, not at once: with
   * Redis down, a set-up can fail in a millisecond, and replacing it then would spin.
   */
  #current: Queue<JobData>;
  /** The current Queue's set-up failed: queue() builds another. */
  private setUpFailed = false;
  /** After close(), no Queue is built again. */
  private closed = false;
  /** Enqueues under way in this process, by job id, and the bytes they hold. */
  private readonly pending: PendingEnqueues;

  /** Whether BullMQ's connection has been ready once: from then on every command has enqueueTimeout as its own. */
  private reachedRedis = false;
  /** BullMQ's wait for its first connection, shared by the deliveries that wait for it. */
  private firstConnection: Promise<void> | undefined;
  /** A delivery waited its whole enqueueTimeout for the first connection, in vain. */
  private unreached = false;

  /** @throws TypeError on a missing connection or an invalid option */
  constructor(options: BullMQDeliveryQueueOptions) {
    if (typeof options?.connection !== 'object' || options.connection === null) {
      throw new TypeError('mitpo-webhooks/bullmq: connection is required, e.g. { url: process.env.REDIS_URL }');
    }
    checkOptionKeys(options, 'BullMQDeliveryQueue', [
      'connection',
      'name',
      'attempts',
      'backoff',
      'enqueueTimeout',
      'lockDuration',
      'deadLetterRetention',
      'maxPendingBytes',
    ]);
    const { name = 'mitpo-webhooks', attempts = 5 } = options;
    if (typeof name !== 'string' || name === '' || name.includes(':')) {
      throw new TypeError('mitpo-webhooks/bullmq: name must be a non-empty string without ":"');
    }
    if (!Number.isSafeInteger(attempts) || attempts < 1 || attempts > MOST_ATTEMPTS) {
      throw new TypeError(`mitpo-webhooks/bullmq: attempts must be a whole number from 1 to ${MOST_ATTEMPTS} (got ${shownValue(attempts)})`);
    }
    this.name = name;
    this.attempts = attempts;
    this.#connection = options.connection;
    this.backoffMs = seconds(options.backoff, 'backoff', 10, 3600) * 1000;
    this.enqueueTimeoutMs = seconds(options.enqueueTimeout, 'enqueueTimeout', 2, 600) * 1000;
    this.lockDurationMs = seconds(options.lockDuration, 'lockDuration', 30, 3600) * 1000;
    this.deadLetterRetentionSeconds = Math.ceil(seconds(options.deadLetterRetention, 'deadLetterRetention', 30 * 86_400, 365 * 86_400));
    const { maxPendingBytes = 32 * 1024 * 1024 } = options;
    if (!Number.isSafeInteger(maxPendingBytes) || maxPendingBytes < 1) {
      throw new TypeError(`mitpo-webhooks/bullmq: maxPendingBytes must be a whole number of bytes (got ${shownValue(maxPendingBytes)})`);
    }
    if (!isClient(options.connection)) {
      checkConnectionUrl(options.connection);
      checkIoredisInstalled();
    }
    this.pending = new PendingEnqueues(maxPendingBytes, 'Redis');
    this.#current = this.newQueue();
  }

  private newQueue(): Queue<JobData> {
    const queue = new Queue<JobData>(this.name, { connection: withCommandTimeout(this.#connection, this.enqueueTimeoutMs) });
    // Without a listener an unreachable Redis is an unhandled 'error' event; each
    // enqueue reports its own failure as a 503.
    queue.on('error', () => undefined);
    queue.waitUntilReady().catch(() => {
      if (queue === this.#current) this.setUpFailed = true;
    });
    return queue;
  }

  /** The Queue to use: a new one in place of one whose set-up failed, with the wait for Redis started afresh. */
  private queue(): Queue<JobData> {
    if (!this.setUpFailed || this.closed) return this.#current;
    const failed = this.#current;
    this.setUpFailed = false;
    this.#current = this.newQueue();
    this.firstConnection = undefined;
    this.unreached = false;
    void this.closeQueue(failed);
    return this.#current;
  }

  /** BullMQ drops a connection that never came up at once, and quits a live one; ours are then dropped if still there. */
  private async closeQueue(queue: Queue<JobData>): Promise<void> {
    await withTimeout(queue.close(), this.enqueueTimeoutMs, () => new Error('timeout')).catch(() => undefined);
    // An app's own client is the app's to close.
    if (!isClient(this.#connection)) await dropConnections([queue.getBackend().client], this.enqueueTimeoutMs);
  }

  /**
   * Bounded: a copy of a delivery whose enqueue is under way in this process
   * shares it (and is answered as a duplicate); a delivery already in Redis is
   * found by its id before its body is sent; and the bytes waiting for Redis are
   * capped until Redis answers or the command fails, so a hung Redis holds no
   * more than `maxPendingBytes` of bodies.
   */
  enqueue(delivery: QueuedDelivery, retentionMs: number): Promise<EnqueueResult> {
    return this.reachedRedis ? this.enqueueNow(delivery, retentionMs) : this.enqueueOnceReached(delivery, retentionMs);
  }

  private readonly notAcknowledged = () => new Error(`Redis did not acknowledge the delivery within ${this.enqueueTimeoutMs / 1000} s`);

  private enqueueNow(delivery: QueuedDelivery, retentionMs: number): Promise<EnqueueResult> {
    const jobId = jobIdOf(delivery.deliveryKey);
    return withTimeout(
      this.pending.run(jobId, delivery.rawBody.byteLength, () => this.add(jobId, delivery, retentionMs), delivery.bodyDigest),
      this.enqueueTimeoutMs,
      this.notAcknowledged,
    );
  }

  /**
   * Until Redis is first reached, BullMQ waits for it with no timeout (no command
   * is sent yet, so none times out). A delivery waits for that up to
   * enqueueTimeout holding no counted bytes, lets go of its body when answered,
   * and is not sent if Redis comes up after its answer. Once one such wait ran
   * out, the next deliveries are refused at once until Redis is reached: a long
   * outage at start-up holds nothing per delivery.
   */
  private enqueueOnceReached(delivery: QueuedDelivery, retentionMs: number): Promise<EnqueueResult> {
    const queue = this.queue();
    if (this.unreached) return Promise.reject(new Error('Redis has not been reached since the queue was made'));
    this.firstConnection ??= queue.waitUntilReady().then(() => void (this.reachedRedis = true));
    let waiting: QueuedDelivery | undefined = delivery;
    return withTimeout(
      this.firstConnection.then(() => (waiting === undefined ? Promise.reject(new Error('answered already')) : this.enqueueNow(waiting, retentionMs))),
      this.enqueueTimeoutMs,
      this.notAcknowledged,
      () => {
        waiting = undefined;
        this.unreached = true;
      },
    );
  }

  private async add(jobId: string, delivery: QueuedDelivery, retentionMs: number): Promise<EnqueueResult> {
    // Queued, running, handled or a dead letter: a duplicate, found without sending the body again.
    if ((await this.queue().getJobState(jobId)) !== 'unknown') {
      if (delivery.bodyDigest === undefined) return 'duplicate';
      return (await this.holdsOtherBytes(jobId, delivery.bodyDigest)) ? 'collision' : 'duplicate';
    }
    const data: JobData = {
      ...(delivery.bodyDigest === undefined ? {} : { bodyDigest: delivery.bodyDigest }),
      deliveryKey: delivery.deliveryKey,
      body: bufferOf(delivery.rawBody).toString('base64'),
      headers: { ...delivery.headers },
      receivedAt: delivery.receivedAt,
      ...(delivery.refused === undefined ? {} : { refused: delivery.refused }),
      ...(delivery.traceparent === undefined ? {} : { traceparent: delivery.traceparent }),
      // A dead letter an operator retried keeps that through a move to its own key.
      ...(delivery.retriedByOperator === true && { retriedByOperator: true }),
    };
    // With an id already taken (another instance queued it since the check), add() changes nothing.
    await this.queue().add(JOB_NAME, data, {
      jobId,
      attempts: this.attempts,
      backoff: { type: 'exponential', delay: this.backoffMs },
      // A handled delivery stays (as the record that answers its replays as
      // duplicates) for the whole window its event can pass the age check.
      removeOnComplete: { age: Math.ceil(retentionMs / 1000) },
      removeOnFail: { age: this.deadLetterRetentionSeconds },
    });
    // So with a key of the app's own, whose job it is now is read back: another's is a collision.
    if (delivery.bodyDigest !== undefined && (await this.holdsOtherBytes(jobId, delivery.bodyDigest))) return 'collision';
    return 'queued';
  }

  /** A key of the app's own: only then is the stored job read, to tell a copy from a collision. */
  private async holdsOtherBytes(jobId: string, bodyDigest: string): Promise<boolean> {
    const stored = await this.queue().getJob(jobId);
    if (stored === undefined) return false;
    // Read as the worker reads it: a job whose body is no text holds no delivery of these bytes.
    const storedDigest = (stored.data as Partial<JobData> | null)?.bodyDigest ?? sha256HexOf(deliveryOf(stored).rawBody);
    return storedDigest !== bodyDigest;
  }

  startWorker(processor: QueuedDeliveryProcessor, options: WorkerOptions, trouble: (error: unknown) => void = () => undefined): DeliveryWorker {
    const { concurrency = 1 } = options;
    // Jobs found tampered with: removed once BullMQ has failed them (a running job is locked).
    const tampered = new Set<string>();
    let closing = false;
    const runJob = async (job: Job<JobData>, token: string | undefined): Promise<void> => {
      const deferrals = deferralsOf(job);
      // Back to waiting until `runAt`, not counted as an attempt.
      const putOff = async (runAt: number) => {
        await job.updateData({ ...job.data, deferrals: deferrals + 1 });
        await job.moveToDelayed(runAt, token);
      };
      if (closing) {
        // BullMQ hands over the next job with the last one's completion or deferral,
        // even once close() paused the worker: run, it would outlive the close, its lock
        // no longer renewed, and run again elsewhere. It is put back unstarted, not
        // counted as an attempt (close() waits for that). With Redis gone, its lock
        // lapses and another worker recovers it, as a started run.
        if (token !== undefined) await putOff(Date.now()).catch(() => undefined);
        throw new DelayedError();
      }
      // A run whose worker died counts: a handler that kills its worker runs at most
      // `attempts` times, and then the delivery is reported as a dead letter.
      const started = startedRuns(job);
      const attempts = job.opts.attempts ?? 1;
      const exhausted = started > attempts;
      const attempt = Math.max(attemptsRun(job, attempts), job.attemptsMade + 1);
      const lastAttempt = attempt >= attempts;
      const turn = new ResourceTurn(() => this.queue(), this.lockDurationMs, keptFor(job));
      try {
        await processor({
          delivery: deliveryOf(job),
          storedAs: String(job.id),
          queuedAt: job.timestamp,
          attempt,
          lastAttempt,
          ...(exhausted && { exhausted: true }),
          takeTurn: (order) => turn.take(order),
          // The applied position is recorded once the handlers succeeded, as the run's
          // completion: a failure to record it fails the run, and is reported as one.
          complete: () => turn.applied(),
        });
      } catch (error) {
        const deadLetter = (error instanceof FinalDeliveryFailure || lastAttempt) && !(error instanceof DeferredDelivery) && !(error instanceof TamperedDelivery);
        if (deadLetter) await turn.keepPosition(this.deadLetterRetentionSeconds * 1000, error instanceof FinalDeliveryFailure ? error.order : undefined);
        await turn.free();
        if (error instanceof DeferredDelivery && token !== undefined) {
          // Each deferral waits twice as long as the last, up to MAX_DEFER_MS.
          await putOff(Date.now() + Math.min(DEFER_MS * 2 ** Math.min(deferrals, 20), MAX_DEFER_MS));
          throw new DelayedError();
        }
        if (error instanceof TamperedDelivery) tampered.add(String(job.id));
        // A delivery that can never succeed (a forged job, a refused payload) is
        // a dead letter at once rather than after every backoff. So is one whose run
        // failed on the worker's last attempt (the processor reported it): BullMQ
        // would retry it, counting only finished runs (attemptsMade) where the worker
        // counts a dead worker's too, and the run after would report it a second time.
        if (error instanceof FinalDeliveryFailure || lastAttempt) throw new UnrecoverableError(toError(error).message);
        throw error;
      }
    };
    // Runs under way, and our jobs whose run ended and whose outcome BullMQ has yet to
    // record: close() waits for both to be none (told by the two callbacks).
    let running = 0;
    const unrecorded = new Set<string>();
    let noneRunning: (() => void) | undefined;
    let allRecorded: (() => void) | undefined;
    const worker = new Worker<JobData>(
      this.name,
      async (job, token) => {
        running += 1;
        try {
          await runJob(job, token);
          unrecorded.add(String(job.id));
        } catch (error) {
          // A run put off or put back has already moved its job itself: nothing for BullMQ to record.
          if (!(error instanceof DelayedError)) unrecorded.add(String(job.id));
          throw error;
        } finally {
          running -= 1;
          if (running === 0) noneRunning?.();
        }
      },
      {
        connection: workerConnection(this.#connection),
        concurrency,
        lockDuration: this.lockDurationMs,
        stalledInterval: this.lockDurationMs,
        // BullMQ fails a job whose worker died more than once by default, without
        // telling anyone but its event listeners. Here a death counts as a started run
        // (see above), and the run after the last one reports the dead letter. The job's
        // own attempts decide that, and a worker's queue may be built without them, so
        // the limit is the most attempts a job can have: BullMQ's never comes first.
        maxStalledCount: MOST_ATTEMPTS,
      },
    );
    const recorded = (job: Job | undefined) => {
      if (job !== undefined && unrecorded.delete(String(job.id)) && unrecorded.size === 0) allRecorded?.();
    };
    worker.on('completed', recorded);
    worker.on('failed', (job) => {
      recorded(job);
      if (job !== undefined && tampered.delete(String(job.id))) void job.remove().catch(() => undefined);
    });
    // Redis unreachable, a command refused: BullMQ tries again; the receiver logs it, at most once a minute.
    worker.on('error', (error) => {
      if (!closing) trouble(error);
    });
    return {
      close: async (timeoutSeconds: number) => {
        closing = true;
        // No new jobs; then, until the deadline, BullMQ's own loop is waited for: the
        // running jobs until BullMQ has recorded them (a handled job never left to look
        // stalled), and any job it hands over with a completion or a deferral, put back
        // above. A plain worker.close() would wait too, but it never ends while Redis is
        // unreachable and cannot be forced once begun; so the wait is bounded, and the
        // close is forced. A job still running is taken up by another worker once its
        // lock lapses (BullMQ's recovery of stalled jobs).
        // Nor does pause() end while Redis is unreachable, even with no job running (it
        // reconnects BullMQ's blocking connection first), and it may not end soon after
        // Redis is back. So the wait ends too once every run has ended and BullMQ has
        // recorded its outcome (however long Redis is away, within the timeout), and
        // pause() has had one enqueueTimeout more. An outcome not recorded within
        // lockDuration of the last run's end never will be (its lock lapsed: BullMQ's
        // record fails, and says nothing), so that wait ends then.
        // A worker neither of whose connections was ever set up (Redis hung or away since it
        // started) has taken no job: jobs are taken on the main one, which can be working while
        // the blocking one is still being set up. pause() would wait for that set-up, and bring
        // a connection back once worker.close() had ended it, for good: the process could not exit.
        const backend = worker.getBackend();
        const neverSetUp = running === 0 && backend.connection.status !== 'ready' && backend.blockingConnection?.status !== 'ready';
        const paused = neverSetUp ? Promise.resolve() : worker.pause();
        const runsEnded = running === 0 ? Promise.resolve() : new Promise<void>((resolve) => (noneRunning = resolve));
        const outcomesRecorded = runsEnded.then(() =>
          unrecorded.size === 0
            ? undefined
            : withTimeout(new Promise<void>((resolve) => (allRecorded = resolve)), this.lockDurationMs, () => new Error('timeout')).catch(() => undefined),
        );
        const thenPaused = outcomesRecorded.then(() => withTimeout(paused, this.enqueueTimeoutMs, () => new Error('timeout')));
        await withTimeout(Promise.race([paused, thenPaused]), timeoutSeconds * 1000, () => new Error('timeout')).catch(() => undefined);
        await withTimeout(worker.close(true), this.enqueueTimeoutMs, () => new Error('timeout')).catch(() => undefined);
        await dropConnections([...(isClient(this.#connection) ? [] : [backend.client]), backend.blockingClient], this.enqueueTimeoutMs);
      },
    };
  }

  idOf(deliveryKey: string): string {
    return jobIdOf(deliveryKey);
  }

  depth(): Promise<QueueDepth> {
    return withTimeout(this.queue().getJobCounts('waiting', 'active', 'delayed', 'failed'), this.enqueueTimeoutMs, () => new Error('Redis did not answer'));
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.closeQueue(this.#current);
  }
}

/**
 * Drops the connections BullMQ opened, now and whenever one comes back, once its
 * close() has had its time. Its QUIT is never answered by a hung Redis (the socket
 * stays open), and the pause() our worker close began reconnects the blocking
 * connection when it ends, which may be long after close() (a hung Redis, a job
 * left running): either keeps the process from exiting, reconnecting every 20 s
 * for ever once Redis is gone. ioredis' disconnect() stops the reconnecting, and
 * destroys a socket the server has not closed within its disconnectTimeout; a
 * connection being dropped has no error left to report.
 * BullMQ hands a connection over only once its set-up has ended, and pause()
 * reconnects one only after that, so a connection not handed over within the
 * wait (Redis hung while the blocking one was being set up) is still dropped
 * whenever it is: close() stops waiting for it, not watching it.
 */
async function dropConnections(clients: Array<Promise<unknown> | undefined>, ms: number): Promise<void> {
  const dropped = clients.map((pending) => (pending ?? Promise.resolve()).then(dropForGood, () => undefined));
  await withTimeout(Promise.all(dropped), ms, () => new Error('timeout')).catch(() => undefined);
}

function dropForGood(handedOver: unknown): void {
  const client = handedOver as
    | { status?: unknown; stream?: { destroyed: boolean }; disconnect(): void; on(event: string, listener: () => void): unknown }
    | undefined;
  if (typeof client?.status !== 'string' || typeof client.on !== 'function') return;
  const drop = () => {
    if (client.status !== 'end' || client.stream?.destroyed === false) client.disconnect();
  };
  drop();
  for (const event of ['connect', 'reconnecting']) client.on(event, drop);
  client.on('error', () => undefined);
}

/**
 * One run's turn on its event's resource (`ordering`), kept in the queue's
 * Redis beside its jobs: held while the handlers run (renewed like BullMQ's
 * job lock, so a dead worker's turn lapses with its job's lock), and freed with
 * the applied position recorded when they succeed. BullMQ then completes the
 * job; a worker that dies between the two leaves a job BullMQ runs again,
 * whose equal position is not stale: at-least-once, as every BullMQ run.
 */
class ResourceTurn {
  private held: { order: EventOrder; keys: [string, string]; renewal: ReturnType<typeof setInterval> } | undefined;
  private readonly token = randomUUID();

  constructor(
    /** The queue's Queue at each call: BullMQDeliveryQueue replaces one whose set-up failed. */
    private readonly queue: () => Queue<JobData>,
    private readonly lockMs: number,
    private readonly keepMs: number,
  ) {}

  async take(order: EventOrder): ReturnType<TakeTurn> {
    const { applied, holder } = resourceKeys(`${this.queue().qualifiedName}:`, order.resource);
    const keys: [string, string] = [applied, holder];
    const answer = await this.eval(TAKE_TURN, keys, [this.token, this.lockMs, order.position]);
    if (answer === 'taken') {
      const renewal = setInterval(() => void this.eval(RENEW_TURN, [keys[1]], [this.token, this.lockMs]).catch(() => undefined), this.lockMs / 3);
      renewal.unref();
      this.held = { order, keys, renewal };
      return 'taken';
    }
    if (answer === 'busy') return 'busy';
    const stale = staleAnswer(answer);
    if (stale !== undefined) return stale;
    throw new Error(`unexpected answer from Redis to a resource's turn: ${String(answer)}`);
  }

  /** The handlers succeeded: the position is recorded and the turn freed, in one script. */
  async applied(): Promise<void> {
    const held = this.held;
    if (held === undefined) return;
    this.held = undefined;
    clearInterval(held.renewal);
    await this.eval(APPLIED, held.keys, [this.token, held.order.position, this.keepMs]);
  }

  /** The run is a dead letter: its resource's position (that of its turn, or `untaken`'s when it took none) is kept as long as it is (KEEP_POSITION). Never throws: with Redis failing, BullMQ cannot record the dead letter either, and the job is taken up again. */
  async keepPosition(keepMs: number, untaken?: EventOrder): Promise<void> {
    const applied = this.held?.keys[0] ?? (untaken && resourceKeys(`${this.queue().qualifiedName}:`, untaken.resource).applied);
    if (applied === undefined) return;
    await this.eval(KEEP_POSITION, [applied], [keepMs]).catch(() => undefined);
  }

  /** The run failed or was put off: the turn is freed, nothing recorded. Never throws: the turn lapses anyway. */
  async free(): Promise<void> {
    const held = this.held;
    if (held === undefined) return;
    this.held = undefined;
    clearInterval(held.renewal);
    await this.eval(FREE_TURN, [held.keys[1]], [this.token]).catch(() => undefined);
  }

  private async eval(script: string, keys: string[], args: Array<string | number>): Promise<unknown> {
    const client = (await this.queue().getBackend().client) as unknown as { eval(...args: Array<string | number>): Promise<unknown> };
    return client.eval(script, keys.length, ...keys, ...args);
  }
}

/**
 * How long an applied position is kept: as long as the job's own record
 * answers replays, the window in which an older event can still pass the age check.
 */
function keptFor(job: Job<JobData>): number {
  const age = (job.opts.removeOnComplete as { age?: unknown } | undefined)?.age;
  return typeof age === 'number' && age > 0 ? age * 1000 : DEFAULT_KEPT_MS;
}

/** maxEventAge's default plus tolerance's, for a job that carries no retention. */
const DEFAULT_KEPT_MS = (3 * 86_400 + 300) * 1000;

/**
 * The job as the worker's checks take it. Only the signature vouches for what
 * Redis hands back: a field of a type the receiver never writes becomes bytes
 * or a key that cannot verify, so the run finds the job tampered with and
 * removes it, rather than failing on it until it is a dead letter.
 */
function deliveryOf(job: Job<JobData>): QueuedDelivery {
  const { deliveryKey, body, headers, receivedAt, refused, traceparent, retriedByOperator } = (job.data ?? {}) as Partial<JobData>;
  return {
    ...(retriedByOperator === true && { retriedByOperator }),
    deliveryKey: typeof deliveryKey === 'string' ? deliveryKey : '',
    rawBody: typeof body === 'string' ? Buffer.from(body, 'base64') : Buffer.alloc(0),
    headers: headers ?? {},
    // Taken only when it is a time just before the job was queued (queued-runs' receiveTime).
    receivedAt: receivedAt as number,
    ...(refused === undefined ? {} : { refused }),
    ...(traceparent === undefined ? {} : { traceparent }),
  };
}

/**
 * The queue's own connection gives up on a command after `ms` (ioredis'
 * `commandTimeout`) unless the options set one, so a hung Redis frees what waits
 * on it; given a client, its own settings stand. Workers' connections never get
 * one: they block on Redis.
 */
function withCommandTimeout(connection: ConnectionOptions, ms: number): ConnectionOptions {
  if (isClient(connection)) return connection;
  const { commandTimeout = ms } = connection as { commandTimeout?: number };
  return { ...connection, lazyConnect: false, commandTimeout };
}

/**
 * BullMQ 6 makes ioredis an optional peer, loaded only when it opens a connection from
 * options; without it, a worker spun at full CPU (BullMQ 6.7.6) and its process answered
 * nothing. So a missing ioredis is a TypeError here, looked up where BullMQ looks for it.
 * Only when that look-up can be made: not with a client factory of the app's own (BullMQ's
 * `RedisConnection.clientFactory`), nor in a bundle, where bullmq itself resolves to no file.
 */
function checkIoredisInstalled(): void {
  if ((RedisConnection as { clientFactory?: unknown }).clientFactory != null) return;
  let bullmq: unknown;
  try {
    bullmq = require.resolve('bullmq');
  } catch {
    return;
  }
  if (typeof bullmq !== 'string') return;
  try {
    require.resolve('ioredis', { paths: [dirname(bullmq)] });
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'MODULE_NOT_FOUND') return;
    throw new TypeError(
      'mitpo-webhooks/bullmq: connection options such as { url } need the ioredis package, which BullMQ 6 does not install: ' +
        'npm install ioredis (or pass a connected ioredis or node-redis client as connection)',
      { cause: error },
    );
  }
}

/**
 * ioredis takes a `url` that is undefined or empty for no URL at all, and connects to
 * 127.0.0.1:6379 in silence: with `{ url: process.env.REDIS_URL }` and the variable
 * unset, deliveries would be queued where no worker looks.
 */
function checkConnectionUrl(connection: ConnectionOptions): void {
  if (!('url' in connection)) return;
  const { url } = connection as { url?: unknown };
  if (url === undefined) throw new TypeError('mitpo-webhooks/bullmq: connection.url is undefined: is REDIS_URL set?');
  if (url === '') throw new TypeError('mitpo-webhooks/bullmq: connection.url is empty: is REDIS_URL set?');
  if (typeof url !== 'string') throw new TypeError(`mitpo-webhooks/bullmq: connection.url must be a Redis URL (got ${shownValue(url)})`);
}

/**
 * Workers block on Redis, so BullMQ needs their commands never to give up. Every
 * connection made from options connects at once (`lazyConnect: false`): BullMQ sets
 * a connection up once and keeps a failure for good, and a lazy client's first
 * connect fails at once while Redis is down, where an eager one waits for Redis.
 */
function workerConnection(connection: ConnectionOptions): ConnectionOptions {
  return isClient(connection) ? connection : { ...connection, lazyConnect: false, maxRetriesPerRequest: null };
}

/** A Redis client given ready-made (ioredis or node-redis) keeps its own settings; options get ours. */
function isClient(connection: ConnectionOptions): boolean {
  const plain = connection as { duplicate?: unknown; connect?: unknown };
  return typeof plain.duplicate === 'function' || typeof plain.connect === 'function';
}

function seconds(value: unknown, name: string, fallback: number, max: number): number {
  return readSeconds(value, { name: `mitpo-webhooks/bullmq: ${name}`, fallback, max })!;
}
