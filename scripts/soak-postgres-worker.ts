// A worker process of `npm run soak -- --postgres`, on the Postgres queue or on
// BullMQ (SOAK_BACKEND). Its handlers apply each dispatch event to the app's own
// tables, then fail at random 20 % of the time: on Postgres the writes go through
// ctx.db, in the transaction that marks the delivery done; on BullMQ through the
// pool, committed at once, since BullMQ's done mark lives in Redis and cannot
// share a transaction with them. The counting is done in those tables; the
// parent hears only what leaves no row there (stale skips, dead letters, throws).
import { Pool } from 'pg';
import { MitpoWebhooks, type DeliveryQueue } from 'mitpo-webhooks';
import { BullMQDeliveryQueue } from 'mitpo-webhooks/bullmq';
import { PostgresDeliveryQueue } from 'mitpo-webhooks/postgres';

const backend = process.env.SOAK_BACKEND;
const schema = process.env.SOAK_SCHEMA!;
const concurrency = Number(process.env.SOAK_CONCURRENCY);
// One client per concurrent run, one for LISTEN and a few for the cleanup and the BullMQ writes.
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: concurrency + 4 });
const queue: DeliveryQueue =
  backend === 'postgres'
    ? new PostgresDeliveryQueue({ pool, schema, pollInterval: 0.2 })
    : // A short lock, so the killed worker's jobs are taken over within a second or two.
      new BullMQDeliveryQueue({ connection: { url: process.env.REDIS_URL! }, name: process.env.SOAK_QUEUE!, lockDuration: 1 });
const webhooks = new MitpoWebhooks({ secret: process.env.SOAK_SECRET!, queue, ordering: true });

webhooks.on(['dispatch.accepted', 'dispatch.completed'], async (event, ctx) => {
  const db = backend === 'postgres' ? ctx.db! : pool;
  const status = event.event === 'dispatch.accepted' ? 'accepted' : 'completed';
  const id = event.data.dispatch_id;
  await db.query(`insert into "${schema}".dispatch_events (delivery_key, dispatch_id, event) values ($1, $2, $3)`, [ctx.deliveryKey, id, status]);
  await db.query(`insert into "${schema}".dispatches (id, status) values ($1, $2) on conflict (id) do update set status = excluded.status`, [id, status]);
  // A few milliseconds of other work after the writes, so the SIGKILL finds runs
  // between their writes and their done mark, where at-least-once runs twice.
  await new Promise((resolve) => setTimeout(resolve, Math.random() * 10));
  if (Math.random() < 0.2) {
    process.send!({ threw: `${id}:${status}` });
    throw new Error('random failure after the writes');
  }
});
webhooks.onStale((event) => process.send!({ stale: `${(event.data as { dispatch_id: string }).dispatch_id}:${event.event.slice('dispatch.'.length)}` }));
webhooks.onDeadLetter((event) => process.send!({ dead: event?.data && 'dispatch_id' in event.data ? String(event.data.dispatch_id) : '(unread)' }));
webhooks.startWorker({ concurrency });

process.on('message', (message: string) => {
  if (message !== 'stop') return;
  // Once closed, the worker must have given every client back: any still out would
  // keep pool.end() from resolving, so they are counted, and the process exits without it.
  void webhooks.close({ timeout: 5 }).finally(() => process.send!({ stillOut: pool.totalCount - pool.idleCount }, () => process.exit(0)));
});
process.send!({ ready: true });
