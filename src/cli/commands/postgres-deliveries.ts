import type { Pool } from 'pg';
import { channelOf } from '../../postgres/schema';
import { sanitizeText } from '../../text/sanitize-text';
import { CommandError, EXIT, RETRY_NOTE, storeCall, storedTime, UsageError, type CliIo } from '../cli-io';

/** Each query gets this long: a CLI must say Postgres is unreachable, not hang. */
const POSTGRES_TIMEOUT_MS = 5000;

/** A `deliveries` state as rows of the Postgres queue hold it. */
const WHERE_STATE: Record<string, string> = {
  failed: `state = 'dead'`,
  waiting: `state = 'waiting' and lease_until is null and run_after <= now()`,
  // Taken by a worker: its run under way (or its worker died, until another takes it).
  active: `state = 'waiting' and lease_until is not null`,
  delayed: `state = 'waiting' and lease_until is null and run_after > now()`,
  completed: `state = 'done'`,
};

interface Row {
  delivery_key: string;
  state: string;
  due: boolean;
  /** Taken by a worker: the `active` state's condition. */
  leased: boolean;
  body: Buffer;
  headers: Record<string, unknown> | null;
  received_at: string;
  started: number;
  attempts: number;
  errors: unknown;
  refused: { issues?: unknown } | null;
  retried_by_operator: boolean;
}

/** A pg Pool on `url`, loaded on demand: pg is an optional peer. */
export function openPool(url: string): Pool {
  let pg: typeof import('pg');
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on demand, as an optional peer
    pg = require('pg') as typeof import('pg');
  } catch {
    throw new CommandError('--postgres needs the pg package: npm install pg');
  }
  // pg reads the URL only at the first query, and a throw there is a stack trace; read
  // here, it is a bad argument. Its error is not shown: it may quote the URL, password and all.
  try {
    new pg.Client({ connectionString: url });
  } catch {
    throw new UsageError('the Postgres URL could not be read (--postgres or DATABASE_URL): give it as postgres://user:password@host:5432/database');
  }
  const pool = new pg.Pool({ connectionString: url, connectionTimeoutMillis: POSTGRES_TIMEOUT_MS, max: 1 });
  pool.on('error', () => undefined);
  return pool;
}

/** `deliveries list|show|retry` against the Postgres queue's tables in `schema`. */
export async function postgresDeliveries(
  pool: Pool,
  schema: string,
  action: 'list' | 'show' | 'retry',
  key: string | undefined,
  { state, limit, json }: { state: string; limit: number; json: boolean },
  io: CliIo,
): Promise<number> {
  const table = `"${schema}".deliveries`;
  const exists = await postgres(pool.query(`select to_regclass($1) is not null as found`, [`"${schema}".deliveries`]));
  if (exists.rows[0]?.found !== true) throw new UsageError(`no Postgres queue in schema ${sanitizeText(schema, 64)} there; ${await queueSchemas(pool)}`);
  const columns = `delivery_key, state, run_after <= now() as due, lease_until is not null as leased, body, headers, received_at, started, attempts, errors, refused, retried_by_operator`;
  if (action === 'list') {
    const where = WHERE_STATE[state];
    if (where === undefined) throw new UsageError(`the Postgres queue keeps no "${state}" state`);
    const { rows } = await postgres(pool.query<Row>(`select ${columns} from ${table} where ${where} order by queued_at limit $1`, [limit]));
    if (json) rows.forEach((row) => io.out(JSON.stringify(asRecord(row))));
    else if (rows.length === 0) io.out(`no ${state} deliveries in schema ${schema}`);
    else rows.forEach((row) => io.out(describe(row)));
    return EXIT.ok;
  }
  if (action === 'show') {
    const row = (await postgres(pool.query<Row>(`select ${columns} from ${table} where delivery_key = $1`, [key]))).rows[0];
    if (row === undefined) throw new CommandError(`no delivery ${sanitizeText(key!, 80)} in schema ${schema}`);
    if (json) {
      io.out(JSON.stringify({ ...asRecord(row), body: sanitizeText(row.body.toString('utf8'), 64 * 1024) }));
      return EXIT.ok;
    }
    io.out(describe(row));
    io.out(`state:       ${stateOf(row)}`);
    io.out(`attempts:    ${attemptsOf(row)} of ${row.attempts}`);
    io.out(`received at: ${storedTime(row.received_at) ?? '(not a date)'}`);
    errorsOf(row).forEach((error, n) => io.out(`error ${n + 1}:     ${error}`));
    if (row.refused?.issues !== undefined) io.out(`schema issues: ${sanitizeText(JSON.stringify(row.refused.issues), 2000)}`);
    io.out('event:');
    io.out(sanitizeText(row.body.toString('utf8'), 64 * 1024));
    return EXIT.ok;
  }
  // An operator's retry runs whatever the event's age, and as on BullMQ its attempts count on
  // from its earlier runs: one that used them all gets one more, its last.
  const retried = await postgres(
    pool.query(
      `update ${table} set state = 'waiting', run_after = now(), attempts = greatest(attempts, started + 1), lease_until = null, retried_by_operator = true, finished_at = null, keep_until = null
        where state = 'dead' ${key === undefined ? '' : 'and delivery_key = $1'}`,
      key === undefined ? [] : [key],
    ),
  );
  await postgres(pool.query(`select pg_notify($1, '')`, [channelOf(schema)]));
  if (key !== undefined && retried.rowCount !== 1) {
    const found = (await postgres(pool.query<Row>(`select ${columns} from ${table} where delivery_key = $1`, [key]))).rows[0];
    throw new CommandError(
      found === undefined ? `no delivery ${sanitizeText(key, 80)} in schema ${schema}` : `delivery ${sanitizeText(key, 80)} is ${stateOf(found)}, not a dead letter: nothing to retry`,
    );
  }
  const count = retried.rowCount ?? 0;
  io.out(
    key === undefined
      ? `retried ${count} dead letter${count === 1 ? '' : 's'} in schema ${schema}${count > 0 ? `: ${RETRY_NOTE}` : ''}`
      : `retried ${sanitizeText(key, 80)}: waiting for a worker; ${RETRY_NOTE}`,
  );
  return EXIT.ok;
}


/** The row's state in the words `--state` takes: a row taken by a worker is `active`, as the active listing finds it. */
function stateOf(row: Row): string {
  if (row.state === 'dead') return 'failed';
  if (row.state === 'done') return 'completed';
  return row.leased ? 'active' : row.due ? 'waiting' : 'delayed';
}

/** Runs as the worker counts them; the start that only reports a dead letter is not one more. */
function attemptsOf(row: Row): number {
  return Math.min(row.started, row.attempts);
}

function errorsOf(row: Row): string[] {
  return (Array.isArray(row.errors) ? row.errors : []).map((error) => sanitizeText(String(error).split('\n', 1)[0]!, 500));
}

function eventOf(row: Row): string {
  const header = row.headers?.['x-mitpo-event'];
  if (typeof header === 'string') return header;
  try {
    const event = (JSON.parse(row.body.toString('utf8')) as { event?: unknown }).event;
    return typeof event === 'string' ? event : '(unknown event)';
  } catch {
    return '(unknown event)';
  }
}

/**
 * A schema with no queue is a mistake (a typo), never an empty list: the message
 * names the schemas that hold one (a `deliveries` table with a `delivery_key`).
 */
async function queueSchemas(pool: Pool): Promise<string> {
  const { rows } = await postgres(
    pool.query<{ schema: string }>(
      `select table_schema as schema from information_schema.columns
        where table_name = 'deliveries' and column_name = 'delivery_key' order by 1 limit 100`,
    ),
  );
  if (rows.length === 0) return 'there is none (run mitpo-webhooks migrate --postgres <url> first?)';
  return `the queues there are in schemas ${rows.map((row) => sanitizeText(row.schema, 64)).join(', ')}`;
}

function describe(row: Row): string {
  const errors = errorsOf(row);
  const last = stateOf(row) === 'failed' && errors.length > 0 ? `  ${sanitizeText(errors.at(-1)!, 200)}` : '';
  return `${sanitizeText(row.delivery_key, 100)}  ${stateOf(row)}  ${sanitizeText(eventOf(row), 64)}  attempts ${attemptsOf(row)}${last}`;
}

function asRecord(row: Row) {
  const errors = errorsOf(row);
  return {
    deliveryKey: sanitizeText(row.delivery_key, 200),
    // The Postgres queue keeps each delivery under its key: that is its job's id.
    jobId: sanitizeText(row.delivery_key, 200),
    state: stateOf(row),
    event: sanitizeText(eventOf(row), 64),
    attempts: attemptsOf(row),
    maxAttempts: row.attempts,
    receivedAt: storedTime(row.received_at),
    errors,
    lastError: errors.at(-1) ?? null,
  };
}

export function postgres<T>(work: Promise<T>): Promise<T> {
  return storeCall('Postgres', POSTGRES_TIMEOUT_MS, work);
}
