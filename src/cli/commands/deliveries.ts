import { parseArgs } from 'node:util';
import type { Job, Queue } from 'bullmq';
import { jobIdOf } from '../../bullmq/job-id';
import { attemptsRun, runsOf } from '../../bullmq/started-runs';
import { sanitizeText } from '../../text/sanitize-text';
import { SCHEMA_NAME } from '../../postgres/schema';
import { openPool, postgresDeliveries } from './postgres-deliveries';
import { CommandError, EXIT, RETRY_NOTE, storeCall, storedTime, UsageError, type CliIo, unexpectedArgument, withoutUserInfo } from '../cli-io';

export const DELIVERIES_USAGE = `Usage: mitpo-webhooks deliveries <list|show|retry> [options]

The deliveries a queued receiver holds: dead letters to inspect and retry, and what
is waiting or running. BullMQDeliveryQueue in Redis (needs the bullmq package), or
with --postgres, PostgresDeliveryQueue's tables (needs the pg package).

  deliveries list [--state failed|waiting|active|completed|delayed] [--limit 50] [--json]
  deliveries show <delivery key> [--json]
  deliveries retry <delivery key> | --all-failed

Options:
  --redis <url>    Redis (default: $REDIS_URL)
  --queue <name>   the queue's name (default mitpo-webhooks)
  --postgres <url> the Postgres queue's database instead of Redis (default: $DATABASE_URL when
                   REDIS_URL is unset or --schema is given)
  --schema <name>  with --postgres: the queue's schema (default mitpo_webhooks)
  --state <state>  with list: which deliveries (default failed: the dead letters)
  --limit <n>      with list: at most this many (default 50)
  --all-failed     with retry: every dead letter
  --json           with list and show: one JSON object per delivery, a line each
  -h, --help       this help

Exits 0 on success, 1 when a delivery is not found or the store cannot be reached, 2 on
bad arguments or a queue that does not exist there (the message names those that do).`;

const STATES = ['failed', 'waiting', 'active', 'completed', 'delayed'] as const;
type State = (typeof STATES)[number];

/** What the receiver stored in a job (see BullMQDeliveryQueue). */
interface StoredDelivery {
  deliveryKey?: string;
  body?: string;
  headers?: Record<string, string>;
  receivedAt?: number;
  refused?: { code?: string; message?: string; issues?: unknown };
  retriedByOperator?: boolean;
}

/** Each Redis call gets this long: a CLI must say Redis is unreachable, not hang. */
const REDIS_TIMEOUT_MS = 5000;

export async function deliveries(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      redis: { type: 'string' },
      postgres: { type: 'string' },
      schema: { type: 'string' },
      // No defaults here: whether one was given tells an option the action or store does not read.
      queue: { type: 'string' },
      state: { type: 'string' },
      limit: { type: 'string' },
      'all-failed': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const [action, key, ...extra] = positionals;
  if (action !== 'list' && action !== 'show' && action !== 'retry') {
    throw new UsageError(action === undefined ? 'deliveries needs list, show or retry' : `unknown action ${JSON.stringify(withoutUserInfo(action))}`);
  }
  if (extra.length > 0) throw unexpectedArgument(extra[0]);
  // An option the action does not read would be dropped without a word.
  const listOnly = action === 'list' ? undefined : (['state', 'limit'] as const).find((name) => values[name] !== undefined);
  if (listOnly !== undefined) throw new UsageError(`--${listOnly} goes with list, not ${action}`);
  if (values['all-failed'] && action !== 'retry') throw new UsageError(`--all-failed goes with retry, not ${action}`);
  const state = (values.state ?? 'failed') as State;
  if (!STATES.includes(state)) throw new UsageError(`--state must be one of ${STATES.join(', ')}`);
  const limit = Number(values.limit ?? '50');
  if (!Number.isSafeInteger(limit) || limit < 1) throw new UsageError('--limit must be a whole number from 1');
  if (action === 'show' && key === undefined) throw new UsageError('deliveries show needs a delivery key');
  if (action === 'retry' && (key === undefined) === !values['all-failed']) {
    throw new UsageError('deliveries retry needs a delivery key, or --all-failed (not both)');
  }
  if (action === 'list' && key !== undefined) throw unexpectedArgument(key);

  if (values.json && action === 'retry') throw new UsageError('--json goes with list and show');
  // BullMQ refuses these itself, with a stack trace; a name is the user's to correct.
  const queueName = values.queue ?? 'mitpo-webhooks';
  if (queueName === '' || queueName.includes(':')) throw new UsageError(`--queue must be a BullMQ queue name, not empty and without ":" (got ${JSON.stringify(queueName)})`);

  // Postgres when asked for (--postgres, or --schema with $DATABASE_URL), or when only $DATABASE_URL says where a queue is.
  const postgresUrl =
    values.postgres ?? (values.redis === undefined && (values.schema !== undefined || !io.env.REDIS_URL) ? io.env.DATABASE_URL || undefined : undefined);
  if (postgresUrl !== undefined) {
    if (values.redis !== undefined) throw new UsageError('--redis and --postgres do not go together');
    if (values.queue !== undefined) throw new UsageError('--queue names a BullMQ queue: the Postgres queue is found by --schema');
    const schema = values.schema ?? 'mitpo_webhooks';
    if (!SCHEMA_NAME.test(schema)) throw new UsageError('--schema must be lower-case letters, digits and _');
    const pool = openPool(postgresUrl);
    try {
      return await postgresDeliveries(pool, schema, action, key, { state, limit, json: values.json }, io);
    } finally {
      await pool.end().catch(() => undefined);
    }
  }
  const url = values.redis ?? io.env.REDIS_URL;
  if (url === undefined || url === '') throw new UsageError('no queue: pass --redis redis://host:6379 or --postgres postgres://host/db, or set REDIS_URL or DATABASE_URL');
  if (values.schema !== undefined) throw new UsageError('--schema goes with the Postgres queue (--postgres or DATABASE_URL), not Redis');
  checkRedisUrl(url);
  const queue = openQueue(queueName, url);
  try {
    await assertQueueExists(queue);
    if (action === 'list') return await list(queue, state, limit, io, values.json);
    if (action === 'show') return await show(queue, key!, io, values.json);
    return await retry(queue, key, io);
  } finally {
    // close(), not disconnect(): disconnect() waits for a connection that may never come.
    await redis(queue.close()).catch(() => undefined);
  }
}

/**
 * The two slips ioredis would not report as such: a web URL, and a database that is no
 * number (it selected database NaN, which Redis refused with a stack trace). Anything else
 * ioredis reads (host:port, a unix socket's path) is left to it. Never echoed: it may hold a password.
 */
function checkRedisUrl(url: string): void {
  const parsed = URL.canParse(url) ? new URL(url) : undefined;
  if (parsed === undefined) return;
  if (/^https?:$/.test(parsed.protocol) || (/^rediss?:$/.test(parsed.protocol) && !/^(\/\d*)?$/.test(parsed.pathname))) {
    throw new UsageError('--redis (or REDIS_URL) must be a redis:// or rediss:// URL whose path, if any, is a database number, e.g. redis://127.0.0.1:6379/0');
  }
}

/**
 * What the connection last failed with: ioredis answers every command on a connection it
 * could not make with "Connection is closed.", which names no cause (refused, no such host).
 */
let connectionError: Error | undefined;
const CLOSED = 'Connection is closed.';

function openQueue(name: string, url: string): Queue {
  // bullmq is an optional peer dependency: loaded only when this command runs.
  let bullmq: typeof import('bullmq');
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on demand, as an optional peer
    bullmq = require('bullmq') as typeof import('bullmq');
  } catch {
    throw new CommandError('the deliveries command needs the bullmq package: npm install bullmq ioredis');
  }
  // skipMetasUpdate: only reading must not create the queue's meta key (which says a queue exists).
  const queue = new bullmq.Queue(name, { connection: { url, maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true }, skipMetasUpdate: true });
  connectionError = undefined;
  queue.on('error', (error: Error) => {
    if (error.message !== CLOSED) connectionError = error;
  });
  return queue;
}

/**
 * A queue name that is not in this Redis is a mistake (a typo), never an empty
 * list: the message names the queues that are there.
 */
async function assertQueueExists(queue: Queue): Promise<void> {
  // The raw client (ioredis, from the connection options openQueue gives): two plain commands.
  const client = (await redis(queue.getBackend().client)) as unknown as {
    options?: { db?: unknown };
    select(db: number): Promise<unknown>;
    exists(key: string): Promise<number>;
    scan(cursor: string, ...args: Array<string | number>): Promise<[string, string[]]>;
  };
  // A database Redis does not have: ioredis's own SELECT fails in the background and it goes on
  // in database 0, where every answer (or a retry) would be about another database's queues.
  const db = Number(client.options?.db ?? 0);
  if (db !== 0) {
    const refused = await redis(client.select(db).then(() => undefined, (error: unknown) => error as Error));
    if (refused !== undefined) throw new UsageError(`Redis has no database ${db} (${sanitizeText(refused.message, 200)})`);
  }
  const prefix = queue.opts.prefix ?? 'bull';
  if ((await redis(client.exists(`${prefix}:${queue.name}:meta`))) === 1) return;
  const names = new Set<string>();
  let cursor = '0';
  do {
    const [next, keys] = await redis(client.scan(cursor, 'MATCH', `${prefix}:*:meta`, 'COUNT', 1000));
    cursor = next;
    for (const key of keys) names.add(sanitizeText(key.slice(prefix.length + 1, -':meta'.length), 80));
  } while (cursor !== '0' && names.size < 100);
  const known = names.size === 0 ? 'there is none' : `the queues there are ${[...names].sort().join(', ')}`;
  throw new UsageError(`no queue ${sanitizeText(queue.name, 80)} in that Redis; ${known}`);
}

async function list(queue: Queue, state: State, limit: number, io: CliIo, json: boolean): Promise<number> {
  const jobs = (await redis(queue.getJobs([state], 0, limit - 1))).filter((found): found is Job => found !== undefined);
  if (json) {
    for (const job of jobs) io.out(JSON.stringify(asRecord(job, state)));
    return EXIT.ok;
  }
  if (jobs.length === 0) {
    io.out(`no ${state} deliveries in queue ${queue.name}`);
    return EXIT.ok;
  }
  for (const job of jobs) io.out(describeJob(job, state));
  return EXIT.ok;
}

async function show(queue: Queue, key: string, io: CliIo, json: boolean): Promise<number> {
  const job = await findJob(queue, key);
  const data = storedOf(job);
  const state = await redis(job.getState());
  if (json) {
    io.out(JSON.stringify({ ...asRecord(job, state), body: sanitizeText(bodyText(data), 64 * 1024) }));
    return EXIT.ok;
  }
  io.out(describeJob(job, state));
  io.out(`state:       ${state}`);
  io.out(`attempts:    ${attemptsOf(job)} of ${maxAttemptsOf(job)}`);
  if (data.receivedAt !== undefined) io.out(`received at: ${storedTime(data.receivedAt) ?? '(not a date)'}`);
  errorsOf(job).forEach((error, n) => io.out(`error ${n + 1}:     ${error}`));
  if (job.failedReason) io.out(`last error:  ${sanitizeText(job.failedReason, 500)}`);
  if (data.refused?.issues !== undefined) io.out(`schema issues: ${sanitizeText(JSON.stringify(data.refused.issues), 2000)}`);
  io.out('event:');
  io.out(sanitizeText(bodyText(data), 64 * 1024));
  return EXIT.ok;
}

async function retry(queue: Queue, key: string | undefined, io: CliIo): Promise<number> {
  if (key === undefined) {
    let retried = 0;
    // The dead letters as they are now, by id, each retried once: a retried job that a
    // worker fails again meanwhile goes back to the failed list, and is not this command's.
    for (const id of await redis(queue.getRanges(['failed'], 0, -1))) {
      const job = await redis(queue.getJob(id));
      if (job === undefined || (await redis(job.getState())) !== 'failed') continue;
      await retryDeadLetter(job);
      retried += 1;
    }
    io.out(`retried ${retried} dead letter${retried === 1 ? '' : 's'} in queue ${queue.name}${retried > 0 ? `: ${RETRY_NOTE}` : ''}`);
    return EXIT.ok;
  }
  const job = await findJob(queue, key);
  const state = await redis(job.getState());
  if (state !== 'failed') throw new CommandError(`delivery ${sanitizeText(key, 80)} is ${state}, not a dead letter: nothing to retry`);
  await retryDeadLetter(job);
  io.out(`retried ${sanitizeText(key, 80)}: waiting for a worker; ${RETRY_NOTE}`);
  return EXIT.ok;
}


/**
 * Marks the job as an operator's retry (it then runs whatever its event's age)
 * and runs it once more, its started runs counted afresh so that the deaths
 * of earlier workers do not use up this one; they are kept in the job's data,
 * so that its attempt number counts on from them.
 */
async function retryDeadLetter(job: Job): Promise<void> {
  await redis(job.updateData({ ...job.data, retriedByOperator: true, runsBeforeRetry: attemptsOf(job), deferrals: 0 }));
  await redis(job.retry('failed', { resetAttemptsStarted: true }));
}

/** A delivery by its key (as `list` prints it) or by its job id. */
async function findJob(queue: Queue, key: string): Promise<Job> {
  const job = (await redis(queue.getJob(jobIdOf(key)))) ?? (await redis(queue.getJob(key)));
  if (job === undefined) throw new CommandError(`no delivery ${sanitizeText(key, 80)} in queue ${queue.name}`);
  return job;
}

function describeJob(job: Job, state: string): string {
  const data = storedOf(job);
  const event = storedEventOf(data) ?? '(unknown event)';
  const error = state === 'failed' && job.failedReason ? `  ${sanitizeText(job.failedReason, 200)}` : '';
  return `${sanitizeText(storedKeyOf(job), 100)}  ${state}  ${sanitizeText(event, 64)}  attempts ${attemptsOf(job)}${error}`;
}

/** A delivery for scripts (`--json`): what `list` and `show` print, every text from Redis sanitised. */
function asRecord(job: Job, state: string) {
  const data = storedOf(job);
  const event = storedEventOf(data);
  return {
    deliveryKey: sanitizeText(storedKeyOf(job), 200),
    jobId: sanitizeText(String(job.id), 200),
    state,
    event: event === undefined ? null : sanitizeText(event, 64),
    attempts: attemptsOf(job),
    maxAttempts: maxAttemptsOf(job),
    receivedAt: storedTime(data.receivedAt),
    errors: errorsOf(job),
    lastError: job.failedReason ? sanitizeText(job.failedReason, 500) : null,
  };
}

/**
 * Runs as the worker counts them ({@link attemptsRun}): every started run, a run
 * whose worker died included, but none put off for its resource's turn, and not
 * the start after the last attempt, which only reports the dead letter.
 */
function attemptsOf(job: Job): number {
  return Math.max(attemptsRun(job, maxAttemptsOf(job)), runsOf(job.attemptsMade));
}

/** The attempts a job was queued with, as a number: its options are Redis's text, and Redis is not trusted. */
function maxAttemptsOf(job: Job): number {
  return runsOf(job.opts.attempts) || 1;
}

/**
 * Each failed attempt's error, oldest first: the first line of the stack BullMQ
 * kept of each, without the error's class name before its message (our own
 * classes', which name nothing an operator acts on), as BullMQ keeps the last error.
 */
function errorsOf(job: Job): string[] {
  return (job.stacktrace ?? [])
    .filter((trace): trace is string => typeof trace === 'string')
    .map((trace) => sanitizeText(trace.split('\n', 1)[0]!.replace(ERROR_NAME, ''), 500));
}

/** `Name: ` at the start of a stack's first line. */
const ERROR_NAME = /^[A-Za-z_$][\w$]*: /;

function eventOf(data: StoredDelivery): string | undefined {
  try {
    const event = (JSON.parse(bodyText(data)) as { event?: unknown }).event;
    return typeof event === 'string' ? event : undefined;
  } catch {
    return undefined;
  }
}

/** The job's fields as stored, which nothing but their shape vouches for: what is not text is not shown as text. */
function storedEventOf(data: StoredDelivery): string | undefined {
  const header: unknown = data.headers?.['x-mitpo-event'];
  return typeof header === 'string' ? header : eventOf(data);
}

function storedKeyOf(job: Job): string {
  const key: unknown = storedOf(job).deliveryKey;
  return typeof key === 'string' ? key : String(job.id);
}

/** The job's data as stored: an object of unchecked fields, empty when Redis holds none. */
function storedOf(job: Job): StoredDelivery {
  return (job.data ?? {}) as StoredDelivery;
}

function bodyText(data: StoredDelivery): string {
  return typeof data.body === 'string' ? Buffer.from(data.body, 'base64').toString('utf8') : '';
}

function redis<T>(work: Promise<T>): Promise<T> {
  return storeCall(
    'Redis',
    REDIS_TIMEOUT_MS,
    work.catch((error: unknown) => {
      throw (error as Error | null)?.message === CLOSED && connectionError !== undefined ? connectionError : error;
    }),
  );
}
