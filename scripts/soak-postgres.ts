// `npm run soak -- --postgres N`: exactly-once on the Postgres queue, and what
// at-least-once costs on BullMQ, counted in the app's own tables. N deliveries
// (N/2 dispatches, each a `dispatch.accepted` and a `dispatch.completed` stamped a
// second later, one dispatch in three sent completed-first) go over HTTP to a
// receiver, with the shared sender's duplicates and forgeries, retried like MITPO on
// any non-2xx. Two worker processes apply each event to `dispatch_events` and
// `dispatches`, then fail at random 20 % of the time; halfway through the sending
// one is SIGKILLed and a replacement started a second later. The same run then on
// BullMQ (`ordering: true` too), whose handlers can only write through the pool,
// outside the done mark. One table side by side.
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Queue } from 'bullmq';
import Redis from 'ioredis';
import { Pool } from 'pg';
import { MitpoWebhooks, type DeliveryQueue } from 'mitpo-webhooks';
import { BullMQDeliveryQueue } from 'mitpo-webhooks/bullmq';
import { PostgresDeliveryQueue } from 'mitpo-webhooks/postgres';
import { signedDelivery, type SignedDelivery } from 'mitpo-webhooks/testing';
import { soakSender } from './soak-sender';

const SECRET = 'whsec_soak_postgres_0123456789';
const SENDERS = 64;
const WORKER_CONCURRENCY = 16;
/** How long the killed worker stays down before its replacement starts, as a supervisor would restart it. */
const RESTART_AFTER_MS = 1000;
const DRAIN_DEADLINE_MS = 180_000;
const EVENTS = ['accepted', 'completed'] as const;

type Backend = 'postgres' | 'bullmq';

interface Outcome {
  requests: number;
  retries: number;
  duplicates: string;
  forged: string;
  forgedAccepted: number;
  statuses: string;
  threw: number;
  cutByKill: string;
  once: number;
  staleSkipped: number;
  staleUntold: number;
  lost: number;
  twice: number;
  twiceAfterThrow: number;
  twiceOtherwise: number;
  deadLetters: number;
  stillOut: number;
  finalCompleted: number;
  finalAccepted: number;
  finalMissing: number;
  acceptedAfterCompleted: number;
  orders: Map<string, number>;
  answeredIn: number;
  drainedIn: number;
  drained: boolean;
}

export async function soakPostgres(total: number): Promise<number> {
  const databaseUrl = process.env.DATABASE_URL;
  const redisUrl = process.env.REDIS_URL;
  if (!databaseUrl || !redisUrl) {
    console.error(
      'npm run soak -- --postgres needs PostgreSQL (DATABASE_URL) and, for the BullMQ run beside it, Redis (REDIS_URL):\n' +
        '  DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379 npm run soak -- --postgres 5000',
    );
    return 2;
  }
  const dispatches = Math.ceil(total / 2);
  console.log(`${dispatches * 2} deliveries (${dispatches} dispatches × accepted + completed), ${SENDERS} in flight, 2 workers × concurrency ${WORKER_CONCURRENCY}\n`);
  const outcomes = new Map<Backend, Outcome>();
  for (const backend of ['postgres', 'bullmq'] as const) {
    console.log(`running on ${backend === 'postgres' ? 'the Postgres queue' : 'BullMQ'}...`);
    outcomes.set(backend, await soakOne(backend, dispatches, databaseUrl, redisUrl));
  }
  const pg = outcomes.get('postgres')!;
  const bull = outcomes.get('bullmq')!;

  const rows: Array<[string, (o: Outcome) => string | number]> = [
    ['deliveries (distinct)', () => dispatches * 2],
    ['requests sent', (o) => o.requests],
    ['  retries after a non-2xx', (o) => o.retries],
    ['  duplicates sent / answered 200', (o) => o.duplicates],
    ['  forged sent / accepted (must be 0)', (o) => o.forged],
    ['answers by status', (o) => o.statuses],
    ['runs under way in the killed worker', (o) => o.cutByKill],
    ['handler runs that threw after their writes', (o) => o.threw],
    ['applied exactly once', (o) => o.once],
    ['skipped as stale, never applied', (o) => o.staleSkipped],
    ['  of which its killed worker never told (found in the table)', (o) => o.staleUntold],
    ['lost (must be 0)', (o) => o.lost],
    ['applied twice or more', (o) => o.twice],
    ['  of which the run had thrown after its writes', (o) => o.twiceAfterThrow],
    ['  of which otherwise (the SIGKILL)', (o) => o.twiceOtherwise],
    ['dead letters', (o) => o.deadLetters],
    ['pool clients still out after close (must be 0)', (o) => o.stillOut],
    ['dispatches ending completed', (o) => `${o.finalCompleted} of ${dispatches}`],
    ['dispatches ending accepted (stale applied)', (o) => o.finalAccepted],
    ['dispatches missing from the table', (o) => o.finalMissing],
    ['accepted applied after completed', (o) => o.acceptedAfterCompleted],
    ['time: all answered / all applied', (o) => `${o.answeredIn.toFixed(1)} s / ${o.drained ? `${o.drainedIn.toFixed(1)} s` : 'NOT DRAINED'}`],
  ];
  const cells = rows.map(([label, of]) => [label, String(of(pg)), String(of(bull))]);
  const widths = [0, 1, 2].map((i) => Math.max(...[['', 'Postgres (ctx.db)', 'BullMQ (pool)'], ...cells].map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('   ');
  console.log(`\n${line(['', 'Postgres (ctx.db)', 'BullMQ (pool)'])}`);
  for (const row of cells) console.log(line(row));
  console.log('');
  for (const [label, outcome] of [['Postgres', pg], ['BullMQ', bull]] as const) {
    const orders = [...outcome.orders].sort((a, b) => b[1] - a[1]);
    const shown = orders.slice(0, 6).map(([order, n]) => `${order} ×${n}`);
    const others = orders.slice(6).reduce((sum, [, n]) => sum + n, 0);
    console.log(`applied order per dispatch, ${label}: ${shown.join(', ')}${others > 0 ? `, ${orders.length - 6} other orders ×${others}` : ''}`);
  }

  // Postgres must be exactly once; on both, nothing may be lost or forged.
  const ok =
    pg.drained &&
    bull.drained &&
    pg.lost + bull.lost === 0 &&
    pg.forgedAccepted + bull.forgedAccepted === 0 &&
    pg.once + pg.staleSkipped === dispatches * 2 &&
    pg.twice === 0 &&
    pg.finalAccepted + pg.finalMissing + pg.acceptedAfterCompleted === 0 &&
    pg.stillOut + bull.stillOut === 0;
  console.log(
    ok
      ? '\nOK: on Postgres every delivery applied exactly once or skipped as stale, none lost, no stale one applied; no forgery accepted on either.'
      : '\nFAILED',
  );
  return ok ? 0 : 1;
}

async function soakOne(backend: Backend, dispatches: number, databaseUrl: string, redisUrl: string): Promise<Outcome> {
  const id = randomUUID().replaceAll('-', '').slice(0, 16);
  const schema = `mitpo_soak_${id}`;
  const queueName = `mitpo-soak-pg-${id}`;
  const pool = new Pool({ connectionString: databaseUrl, max: 16 });
  // attempts and backoff travel with each delivery, so they are the receiver's to set.
  const queue: DeliveryQueue =
    backend === 'postgres'
      ? new PostgresDeliveryQueue({ pool, schema, attempts: 50, backoff: 0.01 })
      : new BullMQDeliveryQueue({ connection: { url: redisUrl }, name: queueName, attempts: 50, backoff: 0.01 });
  if (queue instanceof PostgresDeliveryQueue) await queue.migrate();
  else await pool.query(`create schema "${schema}"`);
  // The app's own tables: every application of an event, and each dispatch's status as the events set it.
  await pool.query(`create table "${schema}".dispatch_events (id bigserial primary key, delivery_key text not null, dispatch_id text not null, event text not null)`);
  await pool.query(`create table "${schema}".dispatches (id text primary key, status text not null)`);
  const inspect = backend === 'bullmq' ? new Queue(queueName, { connection: { url: redisUrl } }) : undefined;
  const heard = { stale: new Set<string>(), threwKeys: new Set<string>(), threw: 0, dead: 0, stillOut: 0 };
  const env = { ...process.env, DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, SOAK_BACKEND: backend, SOAK_SCHEMA: schema, SOAK_QUEUE: queueName, SOAK_SECRET: SECRET, SOAK_CONCURRENCY: String(WORKER_CONCURRENCY) };
  const workers = [startWorker(env, heard), startWorker(env, heard)];
  const webhooks = new MitpoWebhooks({ secret: SECRET, queue, ordering: true });
  const middleware = webhooks.middleware();
  const server = http.createServer((req, res) => middleware(req, res, () => res.writeHead(404).end()));
  let stopped: Promise<void> | undefined;
  const stopAll = () =>
    (stopped ??= (async () => {
      server.close();
      await webhooks.close({ timeout: 5 });
      await Promise.all(workers.map((worker) => worker.stop()));
    })());
  try {
    await Promise.all(workers.map((worker) => worker.ready));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const sender = soakSender((server.address() as AddressInfo).port, SECRET, SENDERS);
    const { post, counts } = sender;
    const deliverUntilAccepted = async (delivery: SignedDelivery) => {
      while ((await post(delivery)) !== 200) {
        counts.retries += 1;
        // MITPO backs off before retrying; a short pause stands for it.
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    };

    let next = 0;
    let restarted: Promise<void> | undefined;
    let activeAtKill: Promise<number> | undefined;
    const started = Date.now();
    await Promise.all(
      Array.from({ length: SENDERS }, async () => {
        while (next < dispatches) {
          const d = next++;
          if (d === Math.floor(dispatches / 2)) {
            workers[0]!.kill();
            // BullMQ shows only what is active, either worker's, so an upper bound; Postgres counts the killed runs' starts (below).
            activeAtKill = inspect?.getJobCounts('active').then((jobs) => jobs.active ?? 0);
            restarted = new Promise((resolve) => setTimeout(resolve, RESTART_AFTER_MS)).then(() => {
              const replacement = startWorker(env, heard);
              workers.push(replacement);
              return replacement.ready;
            });
          }
          // Stamped to the second, as MITPO stamps them: the completion a second after the acceptance.
          const now = Date.now();
          const data = (status: string) => ({ dispatch_id: `dsp_${d}`, channel: 'soak', status });
          const accepted = signedDelivery({ event: 'dispatch.accepted', secret: SECRET, timestamp: new Date(now - 1000), data: data('accepted') });
          const completed = signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp: new Date(now), data: data('completed') });
          // One in three arrives completed-first, as MITPO's retries can deliver them.
          for (const delivery of d % 3 === 0 ? [completed, accepted] : [accepted, completed]) {
            await deliverUntilAccepted(delivery);
            await sender.sendCopies(d, delivery, dispatches);
          }
        }
      }),
    );
    const answeredIn = (Date.now() - started) / 1000;
    await restarted;

    const applied = async () => {
      const { rows } = await pool.query<{ dispatch_id: string; event: string; n: number }>(
        `select dispatch_id, event, count(*)::int as n from "${schema}".dispatch_events group by 1, 2`,
      );
      return new Map(rows.map((row) => [`${row.dispatch_id}:${row.event}`, row.n]));
    };
    // A stale skip is told over IPC once its done mark has committed, so one made by the worker
    // SIGKILLed halfway may never be told. On Postgres the table shows it all the same: a delivery
    // done with nothing applied. Taken for a skip only where one could be (an acceptance whose
    // dispatch's completion was applied): any other done-and-unapplied delivery stays lost.
    const skippedUntold = async (counted: Map<string, number>): Promise<Set<string>> => {
      if (inspect !== undefined) return new Set();
      const { rows } = await pool.query<{ key: string }>(
        `select (convert_from(body, 'UTF8')::jsonb -> 'data' ->> 'dispatch_id') || ':' || substr(convert_from(body, 'UTF8')::jsonb ->> 'event', 10) as key
           from "${schema}".deliveries where state = 'done'`,
      );
      return new Set(
        rows
          .map((row) => row.key)
          .filter((key) => !counted.has(key) && !heard.stale.has(key) && key.endsWith(':accepted') && counted.has(key.replace(/:accepted$/, ':completed'))),
      );
    };
    const pending = async () => {
      if (inspect === undefined) {
        const { rows } = await pool.query<{ n: number }>(`select count(*)::int as n from "${schema}".deliveries where state = 'waiting'`);
        return rows[0]!.n;
      }
      const jobs = await inspect.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      return Object.values(jobs).reduce((sum, n) => sum + n, 0);
    };
    // Everything sent is applied, skipped as stale or a dead letter, and nothing is left to run
    // (the killed worker's runs come back once its lease or lock lapses).
    const deadline = Date.now() + DRAIN_DEADLINE_MS;
    let drained = false;
    while (!drained && Date.now() < deadline) {
      const counted = await applied();
      const accounted = counted.size + [...heard.stale].filter((key) => !counted.has(key)).length + (await skippedUntold(counted)).size + heard.dead;
      drained = accounted >= dispatches * 2 && (await pending()) === 0;
      if (!drained) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const drainedIn = (Date.now() - started) / 1000;
    // The stale skips and dead letters reach this process over IPC: let the last ones arrive.
    await new Promise((resolve) => setTimeout(resolve, 500));
    sender.close();

    const counted = await applied();
    const untold = await skippedUntold(counted);
    // A run the kill cut short counted its start but left no error: it is the surplus of starts over failed runs and the one that finished.
    const cutByKill =
      inspect === undefined
        ? String(
            (await pool.query<{ n: number }>(`select coalesce(sum(started - jsonb_array_length(errors) - 1), 0)::int as n from "${schema}".deliveries where state = 'done'`)).rows[0]!.n,
          )
        : `≤ ${await activeAtKill} (active at the kill)`;
    const outcome: Outcome = {
      requests: counts.requests,
      retries: counts.retries,
      duplicates: `${counts.duplicatesSent} / ${counts.duplicatesAnswered}`,
      forged: `${counts.forgedSent} / ${counts.forgedAccepted}`,
      forgedAccepted: counts.forgedAccepted,
      statuses: sender.statusLine(),
      threw: heard.threw,
      cutByKill,
      once: 0,
      staleSkipped: 0,
      staleUntold: 0,
      lost: 0,
      twice: 0,
      twiceAfterThrow: 0,
      twiceOtherwise: 0,
      deadLetters: heard.dead,
      // Filled in once the workers have stopped, below.
      stillOut: 0,
      finalCompleted: 0,
      finalAccepted: 0,
      finalMissing: 0,
      acceptedAfterCompleted: 0,
      orders: new Map(),
      answeredIn,
      drainedIn,
      drained,
    };
    for (let d = 0; d < dispatches; d++) {
      for (const event of EVENTS) {
        const key = `dsp_${d}:${event}`;
        const n = counted.get(key) ?? 0;
        if (n === 1) outcome.once += 1;
        else if (n > 1) {
          outcome.twice += 1;
          if (heard.threwKeys.has(key)) outcome.twiceAfterThrow += 1;
          else outcome.twiceOtherwise += 1;
        } else if (heard.stale.has(key)) outcome.staleSkipped += 1;
        else if (untold.has(key)) {
          outcome.staleSkipped += 1;
          outcome.staleUntold += 1;
        }
        else outcome.lost += 1;
      }
    }
    const { rows: statuses } = await pool.query<{ id: string; status: string }>(`select id, status from "${schema}".dispatches`);
    const status = new Map(statuses.map((row) => [row.id, row.status]));
    const { rows: orders } = await pool.query<{ dispatch_id: string; applied: string }>(
      `select dispatch_id, string_agg(event, ' > ' order by id) as applied from "${schema}".dispatch_events group by 1`,
    );
    for (const { applied: order } of orders) {
      outcome.orders.set(order, (outcome.orders.get(order) ?? 0) + 1);
      if (/completed.*accepted/.test(order)) outcome.acceptedAfterCompleted += 1;
    }
    for (let d = 0; d < dispatches; d++) {
      const final = status.get(`dsp_${d}`);
      if (final === 'completed') outcome.finalCompleted += 1;
      else if (final === 'accepted') outcome.finalAccepted += 1;
      else outcome.finalMissing += 1;
    }
    await stopAll();
    outcome.stillOut = heard.stillOut;
    return outcome;
  } finally {
    await stopAll();
    await pool.query(`drop schema if exists "${schema}" cascade`);
    await pool.end();
    if (inspect !== undefined) {
      await inspect.obliterate({ force: true }).catch(() => undefined);
      await inspect.close();
      // ordering's applied positions live beside the jobs, under the queue's prefix, which obliterate leaves.
      const redis = new Redis(redisUrl);
      for await (const keys of redis.scanStream({ match: `bull:${queueName}:*`, count: 1000 })) {
        if ((keys as string[]).length > 0) await redis.del(...(keys as string[]));
      }
      await redis.quit();
    }
  }
}

function startWorker(env: NodeJS.ProcessEnv, heard: { stale: Set<string>; threwKeys: Set<string>; threw: number; dead: number; stillOut: number }) {
  const child: ChildProcess = fork(path.join(__dirname, 'soak-postgres-worker.ts'), [], { execArgv: ['-r', 'ts-node/register/transpile-only'], env });
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const ready = new Promise<void>((resolve, reject) => {
    void exit.then(() => reject(new Error('a soak worker exited before it was ready')));
    child.on('message', (m: { ready?: true; stale?: string; threw?: string; dead?: string; stillOut?: number }) => {
      if (m.ready) resolve();
      if (m.stale !== undefined) heard.stale.add(m.stale);
      if (m.threw !== undefined) {
        heard.threw += 1;
        heard.threwKeys.add(m.threw);
      }
      if (m.dead !== undefined) heard.dead += 1;
      if (m.stillOut !== undefined) heard.stillOut += m.stillOut;
    });
  });
  return {
    ready,
    kill: () => child.kill('SIGKILL'),
    stop: async () => {
      if (exited) return;
      child.send('stop');
      await exit;
    },
  };
}
