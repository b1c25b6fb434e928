// A Postgres queue worker in a process of its own, for tests that kill one
// mid-handler: its handler writes to the app's table through ctx.db, tells the
// parent over IPC, and then (with WORKER_HANG) never finishes.
import { Pool } from 'pg';
import { MitpoWebhooks } from '../../src';
import { PostgresDeliveryQueue } from '../../src/postgres';

const pool = new Pool({ connectionString: process.env.DATABASE_URL });
const queue = new PostgresDeliveryQueue({ pool, schema: process.env.SCHEMA!, pollInterval: 0.2 });
const webhooks = new MitpoWebhooks({ secret: process.env.SECRET!, queue });
webhooks.onAny(async (event, ctx) => {
  await ctx.db!.query(`insert into "${process.env.SCHEMA!}".effects (delivery_key) values ($1)`, [ctx.deliveryKey]);
  process.send!({ wrote: ctx.deliveryKey, attempt: ctx.attempt });
  if (process.env.WORKER_HANG) await new Promise(() => {});
});
webhooks.startWorker({ concurrency: 2 });
process.send!({ ready: true });
