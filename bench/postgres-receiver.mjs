// A process of `npm run bench -- --postgres`. argv: role (receiver|worker), queue
// (postgres|bullmq), and for a worker its concurrency and how many runs to time.
// A receiver only enqueues (no worker in its process, so its CPU is the enqueue's);
// a worker's handler writes one row to the app's table, through ctx.db on Postgres
// (in the transaction that marks the delivery done) and through the pool on BullMQ.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { MitpoWebhooks } from 'mitpo-webhooks';
import { BullMQDeliveryQueue } from 'mitpo-webhooks/bullmq';
import { PostgresDeliveryQueue } from 'mitpo-webhooks/postgres';
import { serveForBench } from './serve-for-bench.mjs';

export const SECRET = 'whsec_bench_0123456789abcdef';
const [role, kind, concurrency = '1', timed = '0'] = process.argv.slice(2);
const schema = `mitpo_bench_${process.env.BENCH_RUN}`;
// A pool as large as the load's connections (receiver) or the worker's runs, plus its LISTEN and cleanup.
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: role === 'receiver' ? 16 : Number(concurrency) + 3 });
const queue =
  kind === 'postgres'
    ? new PostgresDeliveryQueue({ pool, schema, pollInterval: 1 })
    : new BullMQDeliveryQueue({ connection: { url: process.env.REDIS_URL }, name: `mitpo-bench-pg-${process.env.BENCH_RUN}` });
const webhooks = new MitpoWebhooks({ secret: SECRET, queue });

if (role === 'worker') {
  // The first runs warm the process up; the next `timed` ones are timed.
  const WARM_UP = 200;
  let ran = 0;
  let from = 0;
  webhooks.onAny(async (_event, ctx) => {
    const db = kind === 'postgres' ? ctx.db : pool;
    await db.query(`insert into "${schema}".effects (delivery_key) values ($1)`, [ctx.deliveryKey]);
    ran += 1;
    if (ran === WARM_UP) from = performance.now();
    if (ran === WARM_UP + Number(timed)) process.send({ perSecond: Number(timed) / ((performance.now() - from) / 1000) });
  });
  process.on('message', async (message) => {
    if (message === 'go') webhooks.startWorker({ concurrency: Number(concurrency) });
    if (message === 'exit') {
      await webhooks.close({ timeout: 2 });
      process.exit(0);
    }
  });
  process.send({ ready: true });
} else {
  const middleware = webhooks.middleware();
  serveForBench(
    http.createServer((req, res) => middleware(req, res, () => res.writeHead(404).end())),
    { beforeExit: () => webhooks.close({ timeout: 2 }) },
  );
}
