import type { Pool, PoolClient, QueryConfig } from 'pg';
import { readSeconds } from '../duration-option';
import { checkOptionKeys, shownValue } from '../option-keys';
import { codeOf, sqlStateOf, toError } from '../errors';
import type { EventOrder } from '../ordering/event-order';
import { sha256HexOf } from '../platform/node-platform';
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
import { PendingEnqueues, type EnqueueResult } from '../queue/pending-enqueues';
import { withTimeout } from '../with-timeout';
import { channelOf, migratedSql, migrationSql, SCHEMA_NAME } from './schema';

/** Options of {@link PostgresDeliveryQueue}. */
export interface PostgresDeliveryQueueOptions {
  /** A node-postgres `Pool` on the app's own database. The queue borrows clients from it and never ends it. */
  pool: Pool;
  /** The schema the queue's tables live in (made by `migrate()`). Default `'mitpo_webhooks'`. */
  schema?: string | undefined;
  /** Runs of a delivery in all, the first included, before it is a dead letter. Set by the receiver. Default 5. */
  attempts?: number | undefined;
  /** Seconds before the first retry, doubling after each; set by the receiver. Default 10. */
  backoff?: number | undefined;
  /** Seconds Postgres has to commit a delivery before the receiver answers 503 `queue_unavailable`. Default 2. */
  enqueueTimeout?: number | undefined;
  /** Seconds an idle worker waits between looks at the table when no notification came. Default 5. */
  pollInterval?: number | undefined;
  /** Seconds a dead letter is kept before the workers remove it. Default 2 592 000 (30 days). */
  deadLetterRetention?: number | undefined;
  /** Bytes of deliveries waiting for Postgres to commit them, at most, in this process (past it: 503). Default 33 554 432 (32 MiB). */
  maxPendingBytes?: number | undefined;
}

/** A reservation to lift, and whether the run's start is uncounted with it (see liftLease). */
interface Lift {
  row: DeliveryRow;
  uncount: boolean;
}

/** A lift Postgres could not take: past `owedUntil` (ms), its reservation has lapsed, and it could only miss. */
type OwedLift = Lift & { owedUntil: number };

/** A delivery row as a worker reads it. */
interface DeliveryRow {
  delivery_key: string;
  body: Buffer;
  headers: unknown;
  received_at: string;
  queued_ms: string;
  started: number;
  attempts: number;
  backoff_ms: number;
  retention_ms: string;
  refused: QueuedDelivery['refused'] | null;
  traceparent: string | null;
  retried_by_operator: boolean;
  /** The reservation this take made, exactly (ISO 8601, to the microsecond, whatever the session's DateStyle): which take a later lift may undo. */
  lease_until: string;
}

/**
 * How long a taken delivery is reserved for its worker between the statement
 * that counts its start and the transaction that locks it for its run: a
 * millisecond or so, unless the worker's event loop is held up (a long GC
 * pause, synchronous work in another run). A worker that dies before its run
 * ends leaves its delivery waiting until then (BullMQ's stalled-job checks take
 * 60 to 90 s at this package's default lockDuration). With 2 s, a live worker held up that long lost its delivery to
 * another, which on the last attempt reported it as a dead letter whose
 * workers died, with no handler run. (Telling a live taker from a dead one by
 * its connection, through pg_stat_activity, was tried: a role that may not read
 * it stopped every run, and behind a pooler the connection outlives the worker.)
 * Were a live worker held up longer still, whichever run finds the row locked
 * by the other, or its start count moved on, leaves it: the lease guards the
 * attempt count, not exactly-once.
 */
const LEASE_SECONDS = 30;
/** How long a run whose resource is busy (`ordering`) first waits before it is tried again, and at most. */
const DEFER_MS = 250;
const MAX_DEFER_MS = 10_000;
/** Done and dead rows past their time are removed by the workers this often, this many at a time (batch after batch while batches come back full). */
const CLEANUP_EVERY_MS = 60_000;
const CLEANUP_BATCH = 1000;
const MIN_STATEMENT_TIMEOUT_MS = 10_000;
/** The least an idle worker waits before it looks again, woken earlier only by a notification. */
const MIN_IDLE_MS = 100;

/**
 * The run's transaction ended under its handlers: only their own COMMIT, ROLLBACK or
 * END on ctx.db does that (Postgres: no_active_sql_transaction). What they wrote may
 * then be committed without the done mark, and a retry would write it again: the
 * delivery is a dead letter now, for an operator to look at, never run again on its own.
 */
class TransactionEnded extends FinalDeliveryFailure {
  override readonly name = 'TransactionEnded';
  readonly code = 'transaction_ended';
}

function endedByHandlers(error: unknown, savepointGone = false): unknown {
  const code = codeOf(error);
  if (code !== '25P01' && !(savepointGone && code === '3B001')) return error;
  return new TransactionEnded(
    "The handlers ended the run's transaction on ctx.db (a COMMIT or ROLLBACK of their own) or released its savepoint: what they wrote may be committed without the done mark, so the delivery is kept as a dead letter and not run again. Handlers must not begin, commit or roll back on ctx.db; use savepoints of their own",
    { cause: error },
  );
}

/**
 * Durable processing in the app's own Postgres, exactly once for what handlers
 * write through `ctx.db`. The receiver inserts each verified delivery into an
 * inbox table and answers once the insert committed; a worker takes one with
 * `FOR UPDATE SKIP LOCKED`, runs its handlers inside a transaction, and marks it
 * done (with `ordering`'s applied position) in that same transaction. A worker
 * killed mid-handler, a failed handler or a lost connection rolls all of it
 * back, and the retry starts clean.
 *
 * @example
 * const queue = new PostgresDeliveryQueue({ pool, schema: 'mitpo_webhooks' });
 * await queue.migrate();
 * const webhooks = new MitpoWebhooks({ secret, queue, ordering: true });
 * webhooks.on('dispatch.completed', (event, ctx) => ctx.db!.query('update ...'));
 * webhooks.startWorker({ concurrency: 10 });
 */
export class PostgresDeliveryQueue implements DeliveryQueue {
  /** The schema that holds the queue's tables, as given (default `mitpo_webhooks`). */
  readonly schema: string;
  /** Runs of a delivery in all, the first included, before it is a dead letter. */
  readonly attempts: number;
  readonly keepsOrder = true;
  // A private field, not TypeScript's `private` (an ordinary property at run time): pg keeps the
  // connection string, password included, on the pool, which logging the queue would print.
  readonly #pool: Pool;
  private readonly table: string;
  private readonly backoffMs: number;
  private readonly enqueueTimeoutMs: number;
  private readonly pollIntervalMs: number;
  private readonly deadLetterRetentionMs: number;
  /** Enqueues under way in this process, by key, and the bytes they hold. */
  private readonly pending: PendingEnqueues;

  /** @throws TypeError on a missing pool or an invalid option */
  constructor(options: PostgresDeliveryQueueOptions) {
    if (typeof options?.pool?.query !== 'function' || typeof options.pool.connect !== 'function') {
      throw new TypeError('mitpo-webhooks/postgres: pool is required: a pg Pool, e.g. new Pool({ connectionString: process.env.DATABASE_URL })');
    }
    checkOptionKeys(options, 'PostgresDeliveryQueue', [
      'pool',
      'schema',
      'attempts',
      'backoff',
      'enqueueTimeout',
      'pollInterval',
      'deadLetterRetention',
      'maxPendingBytes',
    ]);
    const { schema = 'mitpo_webhooks', attempts = 5, maxPendingBytes = 32 * 1024 * 1024 } = options;
    if (typeof schema !== 'string' || !SCHEMA_NAME.test(schema)) {
      throw new TypeError('mitpo-webhooks/postgres: schema must be lower-case letters, digits and _ (at most 48), starting with a letter or _, not starting with pg_');
    }
    if (!Number.isSafeInteger(attempts) || attempts < 1 || attempts > 100) {
      throw new TypeError(`mitpo-webhooks/postgres: attempts must be a whole number from 1 to 100 (got ${shownValue(attempts)})`);
    }
    if (!Number.isSafeInteger(maxPendingBytes) || maxPendingBytes < 1) {
      throw new TypeError(`mitpo-webhooks/postgres: maxPendingBytes must be a whole number of bytes (got ${shownValue(maxPendingBytes)})`);
    }
    this.#pool = options.pool;
    this.schema = schema;
    this.table = `"${schema}".deliveries`;
    this.attempts = attempts;
    this.backoffMs = seconds(options.backoff, 'backoff', 10, 3600) * 1000;
    this.enqueueTimeoutMs = seconds(options.enqueueTimeout, 'enqueueTimeout', 2, 600) * 1000;
    this.pollIntervalMs = seconds(options.pollInterval, 'pollInterval', 5, 3600) * 1000;
    this.deadLetterRetentionMs = seconds(options.deadLetterRetention, 'deadLetterRetention', 30 * 86_400, 365 * 86_400) * 1000;
    this.pending = new PendingEnqueues(maxPendingBytes, 'Postgres');
  }

  /** Creates the schema and its tables if they are missing; safe to run at every start, from several processes at once. */
  async migrate(): Promise<void> {
    const client = await this.#pool.connect();
    try {
      if ((await client.query<{ migrated: boolean }>(migratedSql(this.schema))).rows[0]?.migrated === true) return;
      await client.query('begin');
      await client.query('select pg_advisory_xact_lock(hashtextextended($1, 0))', [`mitpo-webhooks migrate ${this.schema}`]);
      for (const statement of migrationSql(this.schema)) await client.query(statement);
      await client.query('commit');
    } catch (error) {
      await client.query('rollback').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  /**
   * One insert, keyed by the delivery key: 200 `queued` only once it committed;
   * a key already there (waiting, running, done or dead) is a duplicate.
   */
  enqueue(delivery: QueuedDelivery, retentionMs: number): Promise<EnqueueResult> {
    const answer = { given: false };
    return withTimeout(
      this.pending.run(delivery.deliveryKey, delivery.rawBody.byteLength, () => this.insert(delivery, retentionMs, answer), delivery.bodyDigest),
      this.enqueueTimeoutMs,
      () => new Error(`Postgres did not commit the delivery within ${this.enqueueTimeoutMs / 1000} s`),
      () => (answer.given = true),
    ).catch((error: unknown) => {
      throw notMigratedSaid(error, this.schema);
    });
  }

  /**
   * The insert, on a pool client taken within the deadline. The pool waits for a
   * client with no end unless it has connectionTimeoutMillis, and would then send
   * the insert long after the delivery was answered 503: so the wait is cut at the
   * deadline (its bytes no longer counted, its body not held), a client that
   * comes after the answer is handed back unused, and the insert has only the
   * time left. One already sent may still commit after the answer, as any write
   * whose reply is late: MITPO's retry is then a duplicate.
   */
  private async insert(delivery: QueuedDelivery, retentionMs: number, answer: { given: boolean }): Promise<EnqueueResult> {
    const deadline = Date.now() + this.enqueueTimeoutMs;
    const connecting = this.#pool.connect();
    const client = await withTimeout(
      connecting,
      this.enqueueTimeoutMs,
      () => new Error(`no pool client came within enqueueTimeout (${this.enqueueTimeoutMs / 1000} s)`),
      () => void connecting.then((late) => late.release(), () => undefined),
    );
    if (answer.given) {
      client.release();
      throw new Error('answered already');
    }
    let failed: Error | undefined;
    try {
      // A refused delivery waits like any other: a worker checks it again and, refused again,
      // keeps it as a dead letter and tells onDeadLetter, as on BullMQ.
      const timeoutMs = Math.max(1, deadline - Date.now());
      return await insertDelivery(client, this.table, delivery, { attempts: this.attempts, backoffMs: this.backoffMs, retentionMs, timeoutMs });
    } catch (error) {
      failed = toError(error);
      throw error;
    } finally {
      // A client whose query failed (timed out on a connection that hangs) is not put back to be used again.
      client.release(failed);
    }
  }

  startWorker(processor: QueuedDeliveryProcessor, options: WorkerOptions, trouble: (error: unknown) => void = () => undefined): DeliveryWorker {
    const { concurrency = 1 } = options;
    // The worker's listener keeps one client for good: with one in all, no run could ever start.
    const poolSize = (this.#pool as { options?: { max?: unknown } }).options?.max;
    if (typeof poolSize === 'number' && poolSize < 2) {
      throw new TypeError(
        `mitpo-webhooks/postgres: a worker needs a pool of at least 2 clients (its listener keeps one); this pool has max: ${poolSize}. Size it above concurrency + 1`,
      );
    }
    const inserts = { attempts: this.attempts, backoffMs: this.backoffMs, timeoutMs: this.enqueueTimeoutMs };
    return new PostgresWorker(this.#pool, this.schema, this.table, processor, concurrency, this.pollIntervalMs, this.deadLetterRetentionMs, inserts, trouble);
  }

  idOf(deliveryKey: string): string {
    return deliveryKey;
  }

  async depth(): Promise<QueueDepth> {
    const { rows } = await withTimeout(
      // A taken row keeps lease_until until its outcome, a give-back or a lift, however long its
      // run takes: active (so is one whose worker died, until another takes it). Done rows are not read.
      this.#pool.query<{ waiting: string; active: string; delayed: string; failed: string }>(
        `select count(*) filter (where state = 'waiting' and lease_until is not null) as active,
                count(*) filter (where state = 'waiting' and lease_until is null and run_after <= now()) as waiting,
                count(*) filter (where state = 'waiting' and lease_until is null and run_after > now()) as delayed,
                count(*) filter (where state = 'dead') as failed
           from ${this.table} where state in ('waiting', 'dead')`,
      ),
      this.enqueueTimeoutMs,
      () => new Error('Postgres did not answer'),
    );
    const row = rows[0]!;
    return { waiting: Number(row.waiting), active: Number(row.active), delayed: Number(row.delayed), failed: Number(row.failed) };
  }

  /** The pool is the app's: nothing to close here (each worker closes what it took). */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * The workers of one `startWorker()`: `concurrency` loops, each taking one
 * delivery at a time, woken by `NOTIFY` on a connection of its own and by a
 * poll when no notification comes.
 */
class PostgresWorker implements DeliveryWorker {
  private closing = false;
  private readonly loops: Array<Promise<void>>;
  private readonly running = new Set<PoolClient>();
  /** Counts notifications (and close()), so one that comes while a loop is busy is not missed when it goes idle. */
  private wakeups = 0;
  private readonly sleepers = new Set<() => void>();
  private listener: PoolClient | undefined;
  private listening: Promise<void> | undefined;
  private lastCleanup = 0;
  private readonly owedLifts = new Set<OwedLift>();
  /** For the worker's own statements (see bounded()): as long as an insert may take, and at least 10 s, so a busy database is not called out of reach. */
  private readonly statementTimeoutMs: number;
  /** A private field, as on the queue: pg keeps the connection string on the pool. */
  readonly #pool: Pool;

  constructor(
    pool: Pool,
    private readonly schema: string,
    private readonly table: string,
    private readonly processor: QueuedDeliveryProcessor,
    concurrency: number,
    private readonly pollIntervalMs: number,
    private readonly deadLetterRetentionMs: number,
    /** This queue's settings for a delivery a run queues (`enqueueHere`): its own, not the run's row's. */
    private readonly inserts: Omit<InsertSettings, 'retentionMs'>,
    private readonly trouble: (error: unknown) => void,
  ) {
    this.#pool = pool;
    this.statementTimeoutMs = Math.max(inserts.timeoutMs, MIN_STATEMENT_TIMEOUT_MS);
    void this.listen();
    this.loops = Array.from({ length: concurrency }, () => this.loop());
  }

  async close(timeoutSeconds: number): Promise<void> {
    this.closing = true;
    this.wake();
    // The LISTEN connection being opened is waited for within the timeout too: one that
    // comes later is dropped when it does (openListener sees `closing`).
    await withTimeout(Promise.all([...this.loops, this.listening]), timeoutSeconds * 1000, () => new Error('timeout')).catch(() => undefined);
    // A run still going is abandoned: its connection is destroyed, its transaction
    // rolls back, and another worker runs the delivery again.
    for (const client of this.running) client.release(new Error('mitpo-webhooks: the worker closed'));
    this.running.clear();
    this.dropListener();
  }

  /**
   * The `LISTEN` connection is destroyed, not handed back to the app's pool:
   * a pooled connection would keep listening, and our handlers on it.
   */
  private dropListener(): void {
    const listener = this.listener;
    this.listener = undefined;
    if (listener === undefined) return;
    listener.removeAllListeners('notification');
    listener.removeAllListeners('error');
    // A late error of the destroyed connection must not be unhandled.
    listener.on('error', () => undefined);
    listener.release(true);
  }

  private wake(): void {
    this.wakeups += 1;
    for (const wakeUp of this.sleepers) wakeUp();
    this.sleepers.clear();
  }

  /** Sleeps `ms`, or less if a wake-up comes (or came since `seen` was read). */
  private sleep(ms: number, seen: number): Promise<void> {
    if (this.wakeups !== seen || this.closing) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }

  /** A connection kept for `LISTEN`; lost, it is opened again at the next poll. One at a time: loops going idle together share it. */
  private listen(): Promise<void> {
    if (this.closing || this.listener !== undefined) return Promise.resolve();
    this.listening ??= this.openListener().finally(() => {
      this.listening = undefined;
    });
    return this.listening;
  }

  private async openListener(): Promise<void> {
    let client: PoolClient | undefined;
    try {
      client = await this.#pool.connect();
      const held = client;
      held.on('notification', () => this.wake());
      held.on('error', () => {
        // Lost: dropped once (a second release would throw), and opened again at the next idle moment.
        if (this.listener === held) this.dropListener();
      });
      await held.query(this.bounded(`listen "${channelOf(this.schema)}"`));
      this.listener = held;
      if (this.closing) this.dropListener();
    } catch {
      if (client !== undefined && this.listener !== client) {
        client.removeAllListeners('error');
        client.on('error', () => undefined);
        client.release(true);
      }
    }
  }

  private async loop(): Promise<void> {
    while (!this.closing) {
      const seen = this.wakeups;
      let took = false;
      try {
        await this.cleanUp();
        await this.payOwedLifts();
        if (!this.closing) took = await this.runOne();
      } catch (error) {
        // Postgres unreachable, or a query refused (a schema not migrated, a missing grant): the next poll
        // tries again. A run close() left behind fails on its closed client: nothing is tried again then.
        if (!this.closing) this.trouble(notMigratedSaid(error, this.schema));
      }
      if (took || this.closing) continue;
      if (this.listener === undefined) void this.listen();
      // Never a busy loop: a due row another worker holds locked is skipped, not waited for.
      await this.sleep(Math.max(MIN_IDLE_MS, await this.untilNextDue().catch(() => this.pollIntervalMs)), seen);
    }
  }

  /**
   * How long nothing is due: a retry's backoff or a deferred run ends at a time
   * no notification announces, so an idle worker wakes for it then, not at the next poll.
   */
  private async untilNextDue(): Promise<number> {
    // A row whose lease lapsed is running (locked) or its worker died: the poll finds the latter.
    const { rows } = await this.#pool.query<{ wait_ms: number | null }>(
      this.bounded(`select extract(epoch from (min(greatest(run_after, coalesce(lease_until, run_after))) - now())) * 1000 as wait_ms
         from ${this.table} where state = 'waiting' and (lease_until is null or lease_until > now())`),
    );
    const waitMs = rows[0]?.wait_ms;
    return waitMs === null || waitMs === undefined ? this.pollIntervalMs : Math.min(this.pollIntervalMs, Math.max(0, Math.ceil(Number(waitMs))));
  }

  /**
   * Takes one due delivery and runs it. First a statement of its own counts the
   * start and reserves the row (committed at once, so a run whose worker dies
   * still counts); then the run's transaction locks the row for as long as the
   * handlers run, and commits their writes with the outcome.
   * @returns false when nothing was due
   */
  private async runOne(): Promise<boolean> {
    const client = await this.#pool.connect();
    this.running.add(client);
    let broken: Error | undefined;
    // A connection lost while no query runs (a handler doing other work) is an 'error'
    // event on the client, which the pool stops listening for while it is checked out:
    // unheard, it would end the process. The run then fails on its next query.
    const lost = (error: Error) => (broken = error);
    client.on('error', lost);
    let row: DeliveryRow | undefined;
    const progress: RunProgress = { handlersCalled: false };
    try {
      // close() may have come while the pool found a client: no new run starts after it.
      if (this.closing) return false;
      const taken = await client.query<DeliveryRow>(
        this.bounded(`update ${this.table} set started = started + 1, lease_until = now() + interval '${LEASE_SECONDS} seconds'
          where delivery_key = (
            select delivery_key from ${this.table}
             where state = 'waiting' and run_after <= now() and (lease_until is null or lease_until < now())
             order by run_after limit 1 for update skip locked)
          returning delivery_key, body, headers, received_at, (extract(epoch from queued_at) * 1000)::bigint as queued_ms,
                    started, attempts, backoff_ms, retention_ms, refused, traceparent, retried_by_operator, to_json(lease_until) #>> '{}' as lease_until`),
      );
      row = taken.rows[0];
      if (row === undefined) return false;
      await this.run(client, row, progress);
      return true;
    } catch (error) {
      broken = toError(error);
      throw error;
    } finally {
      client.off('error', lost);
      broken ??= progress.commitFailed;
      if (this.running.delete(client)) client.release(broken);
      if (broken !== undefined && row !== undefined) {
        const lift = { row, uncount: !progress.handlersCalled };
        // Postgres out of reach for the lift too: owed, and tried again before the next take.
        await this.liftLease(lift).catch(() => this.owedLifts.add({ ...lift, owedUntil: Date.now() + LEASE_SECONDS * 1000 }));
      }
    }
  }

  /**
   * Lifts a run could not make when its connection failed (each a no-op once its
   * reservation has changed), tried again while the reservation lasts. Never in
   * the way of a take: one that keeps failing is the lift's trouble, not the queue's.
   */
  private async payOwedLifts(): Promise<void> {
    for (const lift of this.owedLifts) {
      if (Date.now() > lift.owedUntil) {
        this.owedLifts.delete(lift);
        continue;
      }
      try {
        await this.liftLease(lift);
        this.owedLifts.delete(lift);
      } catch {
        // Tried again at the next turn of a loop, until its reservation lapses.
      }
    }
  }

  /**
   * A run whose connection failed (Postgres restarted, failed over, or ended it)
   * took its transaction and the row's lock with it, but not its reservation:
   * lifted here, from another connection, its retry need not wait out
   * LEASE_SECONDS. A row still locked (the old transaction alive on the server,
   * across a partition), taken again or finished meanwhile is left alone.
   */
  private async liftLease({ row, uncount }: Lift): Promise<void> {
    await this.#pool.query(
      this.bounded(
        // A run that failed before its handlers were called was no attempt: its start is not counted, as when it gives the row back.
        // Only this take's own reservation: a give-back, another worker's take or an outcome since has changed lease_until.
        `update ${this.table} set lease_until = null${uncount ? ', started = started - 1' : ''} where delivery_key = (
           select delivery_key from ${this.table}
            where delivery_key = $1 and state = 'waiting' and started = $2 and lease_until = $3::timestamptz for update skip locked)`,
        [row.delivery_key, row.started, row.lease_until],
      ),
    );
  }

  private async run(client: PoolClient, row: DeliveryRow, progress: RunProgress): Promise<void> {
    const key = row.delivery_key;
    await client.query(this.bounded('begin'));
    // Any failure below leaves the transaction to runOne, which drops this client (released
    // with the error) and so ends it: a rollback sent first would wait behind the statement
    // that failed, for good on a connection that stopped answering.
    if (!(await this.stillOurs(client, row))) {
      // Skipped as locked: by the run of a worker that took it after this one's lease lapsed
      // (its start moved on, and this changes nothing), or for a moment by another worker's
      // take looking at it. Then it is given back, its start uncounted, rather than left
      // reserved for LEASE_SECONDS with no one to run it.
      await client.query(
        this.bounded(`update ${this.table} set started = started - 1, lease_until = null where delivery_key = $1 and started = $2 and state = 'waiting'`, [
          row.delivery_key,
          row.started,
        ]),
      );
      await client.query(this.bounded('commit'));
      return;
    }
    await client.query(this.bounded('savepoint handlers'));
    const attempt = row.started;
    let turn: EventOrder | undefined;
    const takeTurn: TakeTurn = async (order) => {
      // A lock per resource for this transaction: freed by commit, rollback or a lost connection.
      // Advisory locks are the database's, so the schema is in the key: a queue in another schema
      // (another app, staging) has turns of its own.
      const free = await client.query<{ locked: boolean }>('select pg_try_advisory_xact_lock(hashtextextended($1, 0)) as locked', [
        `mitpo:${this.schema}:${order.resource}`,
      ]);
      if (free.rows[0]?.locked !== true) return 'busy';
      const applied = await client.query<{ position: string }>(`select position from "${this.schema}".resources where resource = $1 and keep_until > now()`, [order.resource]);
      const position = applied.rows[0] === undefined ? undefined : Number(applied.rows[0].position);
      if (position !== undefined && position > order.position) return { stale: position };
      turn = order;
      return 'taken';
    };
    // The done mark and the applied position, committed with the handlers' writes.
    let commitSent = false;
    let committed = false;
    // Set by undo(): the handlers' writes are rolled back already, and need not be again below.
    let rolledBack = false;
    const complete = async () => {
      // Fails in an aborted transaction, or outside one: a handler that broke or ended the
      // run's transaction through ctx.db fails its run, and the done mark never commits on its own.
      await client.query('savepoint done_mark').catch((error: unknown) => {
        throw endedByHandlers(error);
      });
      if (turn !== undefined) {
        await client.query(
          `insert into "${this.schema}".resources (resource, position, keep_until) values ($1, $2, now() + make_interval(secs => $3::double precision / 1000))
           on conflict (resource) do update set
             position = greatest(case when resources.keep_until > now() then resources.position end, excluded.position),
             keep_until = greatest(resources.keep_until, excluded.keep_until)`,
          [turn.resource, turn.position, Number(row.retention_ms)],
        );
      }
      await client.query(
        `update ${this.table} set state = 'done', finished_at = now(), lease_until = null,
           keep_until = now() + make_interval(secs => $2::double precision / 1000) where delivery_key = $1`,
        [key, Number(row.retention_ms)],
      );
      commitSent = true;
      try {
        await client.query('commit');
      } catch (error) {
        // Refused by Postgres (a deferred constraint): not committed, and the connection still
        // records the failure.
        if (refusedByPostgres(error)) throw error;
        // No answer: a COMMIT that landed but whose reply was lost (a network cut, a failover) is
        // a run that succeeded. It is looked up on another connection, so it is not reported as
        // failed (a dead letter, on the last attempt) nor its stale skip left untold. This one
        // is of no more use: it goes back first, so that even the smallest pool has a client for
        // the look-up. Postgres out of reach for the look-up too: a failure, as before.
        progress.commitFailed = toError(error);
        if (this.running.delete(client)) client.release(progress.commitFailed);
        if (!(await this.doneAfterAll(key))) throw error;
      }
      committed = true;
    };
    let failure: unknown;
    try {
      progress.handlersCalled = true;
      await this.processor({
        delivery: deliveryOf(row),
        storedAs: key,
        queuedAt: Number(row.queued_ms),
        // A start after the last attempt runs nothing: it reports the dead letter as the last run.
        attempt: Math.min(attempt, row.attempts),
        lastAttempt: attempt >= row.attempts,
        ...(attempt > row.attempts && { exhausted: true }),
        takeTurn,
        db: client,
        complete,
        // The handlers failed: their writes go, unless they ended the transaction themselves.
        undo: async () => {
          // The savepoint gone (3B001) means the same: a COMMIT then a BEGIN of their own
          // leaves a new transaction without it, and the writes before it committed.
          await client.query('rollback to savepoint handlers').catch((error: unknown) => {
            throw endedByHandlers(error, true);
          });
          rolledBack = true;
        },
        // In this transaction, on this client: a move commits with the done mark, and needs no other client.
        enqueueHere: (delivery, retentionMs) => insertDelivery(client, this.table, delivery, { ...this.inserts, retentionMs }),
      });
      if (!committed) await complete();
      return;
    } catch (error) {
      if (committed) throw error;
      failure = error;
    }
    // The handlers' writes (and a done mark that failed) are undone, and the row's lock, taken
    // before the savepoint, is kept: no other worker takes the row before the outcome commits.
    const undone = !commitSent && (rolledBack || (await client.query('rollback to savepoint handlers').then(() => true, () => false)));
    if (!undone) {
      // The transaction is over (its COMMIT failed, or a handler ended it), and its lock with
      // it: the outcome is recorded in a new one, only if no other worker took the row meanwhile.
      await client.query(this.bounded('rollback'));
      await client.query(this.bounded('begin'));
      if (!(await this.stillOurs(client, row))) {
        await client.query('commit');
        return;
      }
    }
    await this.failed(client, row, attempt, failure, turn);
    await client.query('commit');
  }

  /** Whether the delivery is marked done, as seen from another connection; false when that cannot be told in time. */
  private async doneAfterAll(key: string): Promise<boolean> {
    // Bounded as a whole: the query's own timeout does not cover the wait for a pool client.
    const found = await withTimeout(
      this.#pool.query<{ state: string }>(this.bounded(`select state from ${this.table} where delivery_key = $1`, [key])),
      this.statementTimeoutMs,
      () => new Error('timeout'),
    ).catch(() => undefined);
    return found?.rows[0]?.state === 'done';
  }

  /**
   * Locks the row for this run if it is still this run's: waiting, with no other
   * start counted since (a worker that took it after this one's lease lapsed),
   * and not locked by that worker's run.
   */
  private async stillOurs(client: PoolClient, row: DeliveryRow): Promise<boolean> {
    const locked = await client.query(
      this.bounded(`select 1 from ${this.table} where delivery_key = $1 and state = 'waiting' and started = $2 for update skip locked`, [row.delivery_key, row.started]),
    );
    return locked.rowCount === 1;
  }

  private async failed(client: PoolClient, row: DeliveryRow, attempt: number, failure: unknown, turn: EventOrder | undefined): Promise<void> {
    const key = row.delivery_key;
    if (failure instanceof TamperedDelivery) {
      await client.query(`delete from ${this.table} where delivery_key = $1`, [key]);
      return;
    }
    if (failure instanceof DeferredDelivery) {
      // Not an attempt: it waits for the other event of its resource.
      // Each deferral waits twice as long as the last, up to MAX_DEFER_MS: a resource held for long is not polled hard.
      await client.query(
        `update ${this.table} set started = greatest(started - 1, 0), lease_until = null, deferrals = deferrals + 1,
           run_after = now() + make_interval(secs => least(${DEFER_MS / 1000} * power(2, least(deferrals, 20)), ${MAX_DEFER_MS / 1000})) where delivery_key = $1`,
        [key],
      );
      return;
    }
    // Postgres text cannot hold U+0000, which a handler's message may echo from a payload: refused,
    // the failure would go unrecorded, and its run retried at once rather than after its backoff.
    const message = (failure instanceof Error ? failure.message : String(failure)).replaceAll('\u0000', '\ufffd');
    if (failure instanceof FinalDeliveryFailure || attempt >= row.attempts) {
      await client.query(
        // `started` less any start after the last attempt (it ran nothing), so an operator's retry counts on from the last run.
        `update ${this.table} set state = 'dead', started = least(started, attempts), errors = errors || jsonb_build_array($2::text), finished_at = now(), lease_until = null,
           keep_until = now() + make_interval(secs => $3::double precision / 1000) where delivery_key = $1`,
        [key, message, this.deadLetterRetentionMs],
      );
      const order = turn ?? (failure instanceof FinalDeliveryFailure ? failure.order : undefined);
      if (order !== undefined) await this.keepPositionFor(client, order.resource, this.deadLetterRetentionMs);
      return;
    }
    await client.query(
      `update ${this.table} set errors = errors || jsonb_build_array($2::text), lease_until = null,
         run_after = now() + make_interval(secs => $3::double precision / 1000) where delivery_key = $1`,
      [key, message, row.backoff_ms * 2 ** (attempt - 1)],
    );
  }

  /**
   * A dead letter of a resource keeps the resource's applied position (or, with
   * none yet, a position below every event's) as long as the dead letter is kept:
   * an operator may retry it after `maxEventAge`, past which positions are
   * otherwise forgotten, and it must then still be stale if a later event of
   * its resource was applied meanwhile.
   */
  private async keepPositionFor(client: PoolClient, resource: string, keepMs: number): Promise<void> {
    await client.query(
      `insert into "${this.schema}".resources (resource, position, keep_until) values ($1, 0, now() + make_interval(secs => $2::double precision / 1000))
       on conflict (resource) do update set keep_until = greatest(resources.keep_until, excluded.keep_until)`,
      [resource, keepMs],
    );
  }

  /**
   * One of the worker's own statements, outside a run's handlers and outcome:
   * bounded, so that on a connection that stopped answering (a partition, a
   * failover that left it open) it fails, the client is dropped, and the loop
   * says so and tries again on a new one, instead of waiting on it for good.
   * Never a run's outcome: a commit that timed out may still commit, and the
   * handlers would then run again.
   */
  private bounded(text: string, values?: unknown[]): QueryConfig {
    return { text, values, query_timeout: this.statementTimeoutMs } as QueryConfig;
  }

  /** Done rows past their retention and dead letters past theirs, removed a batch at a time by whichever loop comes first. */
  private async cleanUp(): Promise<void> {
    const now = Date.now();
    if (now - this.lastCleanup < CLEANUP_EVERY_MS) return;
    this.lastCleanup = now;
    const deleted = await this.#pool.query(
      this.bounded(`delete from ${this.table} where delivery_key in (
         select delivery_key from ${this.table} where state <> 'waiting' and keep_until < now() limit ${CLEANUP_BATCH} for update skip locked)`),
    );
    // A full batch: more may be past their time, so the next turn of a loop takes the next
    // batch rather than a minute later (a batch a minute would fall behind past ~17 deliveries a second).
    if (deleted.rowCount === CLEANUP_BATCH) this.lastCleanup = 0;
    await this.#pool.query(this.bounded(`delete from "${this.schema}".resources where keep_until < now()`));
  }
}

function deliveryOf(row: DeliveryRow): QueuedDelivery {
  return {
    ...(row.retried_by_operator && { retriedByOperator: true }),
    deliveryKey: row.delivery_key,
    rawBody: row.body,
    headers: (typeof row.headers === 'object' && row.headers !== null ? row.headers : {}) as Record<string, string>,
    receivedAt: Number(row.received_at),
    ...(row.refused === null ? {} : { refused: row.refused }),
    ...(row.traceparent === null ? {} : { traceparent: row.traceparent }),
  };
}

/**
 * A queue used before `migrate()` (or given another schema's name) fails on a table or
 * schema that is not there (42P01, 3F000): said with the fix, the error kept as the cause.
 */
function notMigratedSaid(error: unknown, schema: string): unknown {
  const state = sqlStateOf(error);
  if (state !== '42P01' && state !== '3F000') return error;
  return new Error(
    `the queue's tables are not in schema "${schema}": run queue.migrate(), or npx mitpo-webhooks migrate --postgres <url> --schema ${schema} (${(error as Error).message})`,
    { cause: error },
  );
}

/**
 * Whether Postgres refused a statement itself, so a COMMIT did not commit: a
 * SQLSTATE, other than a connection's failure (08) or an end of the session
 * (57P01 to 57P05: an operator's, a crash's, a shutdown's), which can come in
 * place of a COMMIT that landed. A cancel (57014) cannot undo a COMMIT that
 * landed: one cancelled did not commit.
 */
function refusedByPostgres(error: unknown): boolean {
  const state = sqlStateOf(error);
  return state !== undefined && !state.startsWith('08') && !state.startsWith('57P');
}

/** What runOne learns of a run: whether its handlers were called, and a COMMIT that got no answer (its client is not used again). */
interface RunProgress {
  handlersCalled: boolean;
  commitFailed?: Error | undefined;
}

/** What a queued delivery's row is given besides the delivery: the queue's settings, milliseconds. */
interface InsertSettings {
  attempts: number;
  backoffMs: number;
  retentionMs: number;
  /** Bounds the insert once it has a connection. */
  timeoutMs: number;
}

/**
 * One insert keyed by the delivery key, through `db`: the pool for a receiver,
 * or a run's client inside its transaction. A key already there (waiting,
 * running, done or dead) is a duplicate; with a key of the app's own, only
 * then is the stored row read, to tell a copy from a collision.
 */
async function insertDelivery(
  db: Pool | PoolClient,
  table: string,
  delivery: QueuedDelivery,
  { attempts, backoffMs, retentionMs, timeoutMs }: InsertSettings,
): Promise<EnqueueResult> {
  const inserted = await db.query({
    // Bounds the statement on its connection (the wait for a connection is bounded by the caller).
    query_timeout: timeoutMs,
    text: `insert into ${table}
       (delivery_key, body, headers, received_at, attempts, backoff_ms, retention_ms, body_digest, refused, traceparent, retried_by_operator)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     on conflict (delivery_key) do nothing`,
    values: [
      delivery.deliveryKey,
      delivery.rawBody,
      JSON.stringify(delivery.headers),
      delivery.receivedAt,
      attempts,
      backoffMs,
      Math.ceil(retentionMs),
      delivery.bodyDigest ?? null,
      delivery.refused === undefined ? null : JSON.stringify(delivery.refused),
      delivery.traceparent ?? null,
      // A dead letter an operator retried keeps that through a move to its own key.
      delivery.retriedByOperator === true,
    ],
  } as QueryConfig);
  if (inserted.rowCount === 1) return 'queued';
  if (delivery.bodyDigest === undefined) return 'duplicate';
  const stored = await db.query<{ body_digest: string | null; body: Buffer }>({
    query_timeout: timeoutMs,
    text: `select body_digest, body from ${table} where delivery_key = $1`,
    values: [delivery.deliveryKey],
  } as QueryConfig);
  const row = stored.rows[0];
  if (row === undefined) return 'duplicate';
  return (row.body_digest ?? sha256HexOf(row.body)) === delivery.bodyDigest ? 'duplicate' : 'collision';
}

function seconds(value: unknown, name: string, fallback: number, max: number): number {
  return readSeconds(value, { name: `mitpo-webhooks/postgres: ${name}`, fallback, max })!;
}
