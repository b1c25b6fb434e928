// Exactly once, in order, in the app's own Postgres: the receiver inserts each
// verified delivery into an inbox table and answers; the worker applies it to the
// app's `dispatches` table through ctx.db, in the transaction that also marks it
// done, so a crash or a failed handler never applies it twice or half. An email
// (outside the database) goes through an outbox row written in that same
// transaction, and is sent after the commit: the outbox pattern.
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npm run example:postgres
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'pg';
import { MitpoWebhooks, type DatabaseClient } from 'mitpo-webhooks';
import { PostgresDeliveryQueue } from 'mitpo-webhooks/postgres';
import { sendDelivery } from 'mitpo-webhooks/testing';

const secret = process.env.MITPO_WEBHOOK_SECRET ?? 'whsec_postgres_example';

/** The app's own tables: what MITPO's events change, and the outbox for what leaves the database. */
export async function createAppTables(pool: Pool, schema = 'public'): Promise<void> {
  await pool.query(`create table if not exists "${schema}".dispatches (id text primary key, status text not null, updated_by text not null)`);
  await pool.query(`create table if not exists "${schema}".outbox (id serial primary key, kind text not null, payload jsonb not null, sent_at timestamptz)`);
}

/** Receiver and worker on one database; in production, run startWorker() in processes of its own. */
export function createWebhooks(pool: Pool, { schema = 'public', queueSchema = 'mitpo_webhooks', log = console.log } = {}) {
  const queue = new PostgresDeliveryQueue({ pool, schema: queueSchema, attempts: 5, backoff: 1 });
  const webhooks = new MitpoWebhooks({ secret, queue, ordering: true });

  const setStatus = async (id: string, status: string, deliveryKey: string, db: DatabaseClient) => {
    // ctx.db is inside the delivery's transaction: this write and the done mark commit together.
    await db.query(
      `insert into "${schema}".dispatches (id, status, updated_by) values ($1, $2, $3)
       on conflict (id) do update set status = excluded.status, updated_by = excluded.updated_by`,
      [id, status, deliveryKey],
    );
  };
  webhooks.on('dispatch.accepted', (event, ctx) => setStatus(event.data.dispatch_id, 'accepted', ctx.deliveryKey, ctx.db!));
  webhooks.on('dispatch.completed', async (event, ctx) => {
    await setStatus(event.data.dispatch_id, 'completed', ctx.deliveryKey, ctx.db!);
    // Not sent from here: a send before the commit could be repeated by a retry. The
    // outbox row commits with the status, and a sender delivers it once it is there.
    await ctx.db!.query(`insert into "${schema}".outbox (kind, payload) values ('email', $1)`, [{ to: 'ops@example.com', dispatch: event.data.dispatch_id }]);
  });
  webhooks.on('dispatch.failed', (event, ctx) => setStatus(event.data.dispatch_id, 'failed', ctx.deliveryKey, ctx.db!));
  // With ordering, a dispatch.accepted retried after its dispatch.completed was applied is skipped.
  webhooks.onStale((event, _ctx, { latest }) => log(`  skipped stale ${event.event} (a later event of ${latest.timestamp.toISOString()} was applied)`));
  return { webhooks, queue };
}

/**
 * The outbox's sender: claims unsent rows with SKIP LOCKED, sends each, and marks
 * it sent in the same transaction. A crash between the send and the commit sends
 * it again: effects outside the database stay at-least-once, so make them
 * idempotent where you can (an idempotency key on the email API, say).
 */
export async function sendOutbox(pool: Pool, send: (payload: unknown) => Promise<void>, schema = 'public'): Promise<number> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const { rows } = await client.query(`select id, payload from "${schema}".outbox where sent_at is null order by id limit 100 for update skip locked`);
    for (const row of rows) {
      await send(row.payload);
      await client.query(`update "${schema}".outbox set sent_at = now() where id = $1`, [row.id]);
    }
    await client.query('commit');
    return rows.length;
  } catch (error) {
    await client.query('rollback');
    throw error;
  } finally {
    client.release();
  }
}

async function main(): Promise<void> {
  const pool = new Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test' });
  await createAppTables(pool);
  const { webhooks, queue } = createWebhooks(pool);
  await queue.migrate();
  const middleware = webhooks.middleware({ path: '/webhooks/mitpo' });
  const server = http.createServer((req, res) => middleware(req, res, () => res.writeHead(404).end()));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/mitpo`;
  webhooks.startWorker({ concurrency: 4 });

  const id = `dsp_${Date.now()}`;
  const data = (status: string) => ({ dispatch_id: id, channel: 'email', status });
  const t = Date.now() / 1000;
  // The completion arrives first; the acceptance, retried by MITPO, after it.
  for (const [event, at] of [['dispatch.completed', t], ['dispatch.accepted', t - 5]] as const) {
    const { status, body } = await sendDelivery(url, { event, secret, data: data(event.split('.')[1]!), timestamp: at });
    console.log(`${event}: ${status} ${JSON.stringify(body)}`);
  }
  // The worker runs them in a moment; wait until nothing is left waiting.
  for (let i = 0; i < 100; i++) {
    const { rows } = await pool.query(`select count(*)::int as n from mitpo_webhooks.deliveries where state = 'waiting'`);
    if (rows[0].n === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const sent = await sendOutbox(pool, async (payload) => console.log(`  email sent: ${JSON.stringify(payload)}`));
  const { rows } = await pool.query('select id, status from dispatches where id = $1', [id]);
  console.log(`dispatch ${id} is ${rows[0]?.status} (not moved back to accepted); ${sent} outbox row(s) sent`);
  await webhooks.close({ timeout: 5 });
  server.close();
  await pool.end();
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
