// `npm run soak [-- N]`: a reliability run, not part of `npm test`. A receiver
// whose handlers fail at random 20% of the time; a sender that retries every
// non-2xx like MITPO would; N distinct deliveries plus duplicates and forged ones
// at high concurrency. Prints what was lost, run twice or wrongly accepted (all
// must be 0) and the receiver's memory, which must stay flat once the replay
// store is full. With --heap, the heap of one receiver across N deliveries
// instead (soak-heap.ts); with --queue, the queued run (soak-queue.ts); with
// --postgres, exactly-once on the Postgres queue beside BullMQ (soak-postgres.ts); with
// --frozen-redis, replays of a 1 MiB delivery while Redis hangs (soak-frozen-redis.ts).
import { fork } from 'node:child_process';
import path from 'node:path';
import { soakSender } from './soak-sender';

import { soakHeap } from './soak-heap';
import { soakQueue } from './soak-queue';
import { soakPostgres } from './soak-postgres';
import { soakFrozenRedis } from './soak-frozen-redis';

const QUEUED = process.argv.includes('--queue');
const POSTGRES = process.argv.includes('--postgres');
const HEAP = process.argv.includes('--heap');
const FROZEN_REDIS = process.argv.includes('--frozen-redis');
const TOTAL = Number(process.argv.slice(2).find((arg) => /^[0-9]+$/.test(arg)) ?? (QUEUED ? 20_000 : POSTGRES ? 5000 : HEAP ? 100_000 : 40_000));
const CONCURRENCY = 64;
const MAX_ENTRIES = 5_000;
const SECRET = 'whsec_soak_0123456789';
const MAX_ATTEMPTS = 100;

interface Report {
  successes: number[];
  attempts: number;
  before: { rss: number; heapUsed: number };
  atSaturation?: { rss: number; heapUsed: number };
  after: { rss: number; heapUsed: number };
  peakRss: number;
  peakHeap: number;
  storeSize: number;
}

async function main(): Promise<number> {
  const child = fork(path.join(__dirname, 'soak-receiver.ts'), [], {
    execArgv: ['-r', 'ts-node/register/transpile-only', '--expose-gc'],
    env: { ...process.env, SOAK_TOTAL: String(TOTAL), SOAK_MAX_ENTRIES: String(MAX_ENTRIES), SOAK_SECRET: SECRET },
  });
  const port = await new Promise<number>((resolve) => child.once('message', (m: { port: number }) => resolve(m.port)));
  const sender = soakSender(port, SECRET, CONCURRENCY);
  const { post, counts } = sender;

  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < TOTAL) {
        const seq = next++;
        const delivery = sender.deliveryFor(seq);
        let status = 0;
        for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
          status = await post(delivery);
          if (status >= 200 && status < 300) break;
          counts.retries += 1;
          // MITPO backs off before retrying; a short pause keeps 409s from spinning.
          await new Promise((resolve) => setTimeout(resolve, status === 409 ? 5 : 1));
        }
        if (status < 200 || status >= 300) counts.gaveUp += 1;
        await sender.sendCopies(seq, delivery, TOTAL);
      }
    }),
  );
  const seconds = (Date.now() - started) / 1000;
  child.send('report');
  const report = await new Promise<Report>((resolve, reject) => {
    child.once('message', (m: Report) => resolve(m));
    child.once('exit', (code) => reject(new Error(`the receiver exited (${code}) before reporting`)));
  });
  sender.close();

  const once = report.successes.filter((n) => n === 1).length;
  const lost = report.successes.filter((n) => n === 0).length;
  const twice = report.successes.filter((n) => n > 1).length;
  const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  const lines = [
    ['deliveries (distinct)', TOTAL],
    ['requests sent', counts.requests],
    ['  retries after a non-2xx', counts.retries],
    ['  duplicates sent / answered 200', `${counts.duplicatesSent} / ${counts.duplicatesAnswered}`],
    ['  forged sent', counts.forgedSent],
    ['answers by status', sender.statusLine()],
    ['handler attempts (20% fail at random)', report.attempts],
    ['handled exactly once', once],
    ['lost (must be 0)', lost],
    ['run twice (must be 0)', twice],
    ['forged accepted (must be 0)', counts.forgedAccepted],
    ['time', `${seconds.toFixed(1)} s (${Math.round(counts.requests / seconds)} requests/s, ${CONCURRENCY} in flight)`],
    ['receiver peak RSS / heap', `${mb(report.peakRss)} / ${mb(report.peakHeap)}`],
    ['receiver RSS / heap before (after GC)', `${mb(report.before.rss)} / ${mb(report.before.heapUsed)}`],
    ['  when the store first held maxEntries keys', report.atSaturation ? `${mb(report.atSaturation.rss)} / ${mb(report.atSaturation.heapUsed)}` : 'not reached'],
    ['  after the run (after GC)', `${mb(report.after.rss)} / ${mb(report.after.heapUsed)}`],
    ['replay store keys at the end, handled and claimed (maxEntries)', `${report.storeSize} (${MAX_ENTRIES})`],
  ] as const;
  for (const [label, value] of lines) console.log(`${label.padEnd(46)} ${value}`);
  const heapGrowth = report.atSaturation ? report.after.heapUsed - report.atSaturation.heapUsed : Number.NaN;
  console.log(`${'heap growth after the store filled'.padEnd(46)} ${mb(heapGrowth)}`);
  const ok = lost === 0 && twice === 0 && counts.forgedAccepted === 0 && counts.gaveUp === 0 && report.storeSize <= MAX_ENTRIES;
  console.log(ok ? '\nOK: nothing lost, nothing run twice, no forgery accepted.' : '\nFAILED');
  return ok ? 0 : 1;
}

(FROZEN_REDIS ? soakFrozenRedis() : POSTGRES ? soakPostgres(TOTAL) : QUEUED ? soakQueue(TOTAL) : HEAP ? soakHeap(TOTAL) : main()).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
