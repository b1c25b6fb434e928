// `npm run bench -- --postgres`: the Postgres queue beside BullMQ. First what MITPO
// and the receiver pay: answer latency p50/p99 and the receiver's CPU per request
// for the insert and for the enqueue (receivers in processes of their own, no worker
// running, medians of a few interleaved rounds); then what a worker gets through,
// deliveries a second with concurrency 1 and 4, on the backlog those rounds left.
import os from 'node:os';
import { median, start } from './child-process.mjs';
import { Queue } from 'bullmq';
import Redis from 'ioredis';
import pg from 'pg';
import { PostgresDeliveryQueue } from 'mitpo-webhooks/postgres';

const ROUNDS = 5;
const CONNECTIONS = 16;
const AMOUNT = 3000;
const QUEUES = [
  { kind: 'postgres', label: 'Postgres (insert, commit)' },
  { kind: 'bullmq', label: 'BullMQ (enqueue)' },
];
const CONCURRENCIES = [1, 4];
/** Runs timed per worker, after its warm-up; the rounds leave ROUNDS × AMOUNT deliveries, enough for every worker. */
const TIMED = 2000;
/** Each worker is timed this many times, interleaved, and its best kept: what other load on the machine takes only lowers a figure. */
const WORKER_ROUNDS = 2;


const exited = (child) => new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));

export async function runPostgresBench() {
  if (!process.env.DATABASE_URL || !process.env.REDIS_URL) {
    console.error(
      'npm run bench -- --postgres needs PostgreSQL (DATABASE_URL) and, for BullMQ beside it, Redis (REDIS_URL):\n' +
        '  DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379 npm run bench -- --postgres',
    );
    process.exit(2);
  }
  process.env.BENCH_RUN = `${Date.now()}`;
  const schema = `mitpo_bench_${process.env.BENCH_RUN}`;
  const queueName = `mitpo-bench-pg-${process.env.BENCH_RUN}`;
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
  await new PostgresDeliveryQueue({ pool, schema }).migrate();
  // The app's table the workers' handlers write to (BullMQ's too, so both do the same work).
  await pool.query(`create table "${schema}".effects (id bigserial primary key, delivery_key text not null)`);
  console.log(`Postgres queue vs BullMQ: node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, nothing pinned (Postgres and Redis share the cores)`);
  console.log(`answers: ${ROUNDS} rounds × ${AMOUNT} requests, ${CONNECTIONS} connections, 300 B bodies; workers: ${TIMED} runs timed after 200 to warm up, best of ${WORKER_ROUNDS}\n`);

  let failures = 0;
  const samples = QUEUES.map(() => ({ p50: [], p99: [], cpu: [], rps: [] }));
  const load = start('./load.mjs', []);
  const receivers = [];
  try {
    await load.ask(undefined, (m) => m.started);
    for (const { kind } of QUEUES) {
      const receiver = start('./postgres-receiver.mjs', ['receiver', kind]);
      receivers.push({ ...receiver, port: (await receiver.ask(undefined, (m) => m.port)).port });
    }
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which queue goes first, so neither always follows the other's backlog growth.
      const order = round % 2 ? [...QUEUES.keys()].reverse() : [...QUEUES.keys()];
      for (const i of order) {
        const receiver = receivers[i];
        await load.ask({ cmd: 'prepare', size: 300, amount: AMOUNT }, (m) => m.ready);
        const before = await receiver.ask('stats', (m) => m.cpuMicros !== undefined);
        const result = await load.ask({ cmd: 'go', url: `http://127.0.0.1:${receiver.port}/webhooks/mitpo`, connections: CONNECTIONS }, (m) => m.rps !== undefined);
        const after = await receiver.ask('stats', (m) => m.cpuMicros !== undefined);
        if (result.notOk > 0 || result.ok !== AMOUNT) {
          failures += 1;
          console.error(`FAILED ${QUEUES[i].label}: ${result.ok} 2xx, ${result.notOk} other`);
        }
        samples[i].p50.push(result.p50);
        samples[i].p99.push(result.p99);
        samples[i].rps.push(result.rps);
        samples[i].cpu.push((after.cpuMicros - before.cpuMicros) / Math.max(1, result.ok));
      }
      console.log(`round ${round + 1}/${ROUNDS} done`);
    }
    for (const { child } of [...receivers, load]) {
      child.send('exit');
      await exited(child);
    }

    // One worker process at a time on the backlog, so each has the cores to itself (with Postgres or Redis).
    const throughput = QUEUES.map(() => new Map());
    for (let round = 0; round < WORKER_ROUNDS; round++) {
      for (const concurrency of CONCURRENCIES) {
        for (const [i, { kind }] of QUEUES.entries()) {
          const worker = start('./postgres-receiver.mjs', ['worker', kind, String(concurrency), String(TIMED)]);
          await worker.ask(undefined, (m) => m.ready);
          const { perSecond } = await worker.ask('go', (m) => m.perSecond !== undefined);
          throughput[i].set(concurrency, Math.max(throughput[i].get(concurrency) ?? 0, perSecond));
          worker.child.send('exit');
          await exited(worker.child);
        }
      }
      console.log(`workers round ${round + 1}/${WORKER_ROUNDS} done`);
    }

    const header = ['queue', 'answer p50 ms', 'answer p99 ms', 'req/s', 'receiver CPU µs/req', ...CONCURRENCIES.map((c) => `worker ×${c} deliveries/s`)];
    const rows = QUEUES.map(({ label }, i) => [
      label,
      String(median(samples[i].p50)),
      String(median(samples[i].p99)),
      String(Math.round(median(samples[i].rps))),
      median(samples[i].cpu).toFixed(1),
      ...CONCURRENCIES.map((c) => String(Math.round(throughput[i].get(c)))),
    ]);
    const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
    const line = (cells) => cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ');
    console.log(`\n${line(header)}`);
    for (const row of rows) console.log(line(row));
    console.log(`\nreceiver CPU, Postgres insert ÷ BullMQ enqueue: ${(median(samples[0].cpu) / median(samples[1].cpu)).toFixed(2)}`);
  } finally {
    for (const { child } of [...receivers, load]) if (child.exitCode === null) child.kill('SIGKILL');
    await pool.query(`drop schema if exists "${schema}" cascade`);
    await pool.end();
    const queue = new Queue(queueName, { connection: { url: process.env.REDIS_URL } });
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    // Whatever obliterate leaves under the queue's prefix.
    const redis = new Redis(process.env.REDIS_URL);
    for await (const keys of redis.scanStream({ match: `bull:${queueName}:*`, count: 1000 })) if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  }
  process.exit(failures > 0 ? 1 : 0);
}
