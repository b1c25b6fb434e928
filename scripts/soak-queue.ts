// `npm run soak -- --queue N`: durable processing under load. A receiver queues
// N distinct deliveries (plus duplicates and forgeries, retried like MITPO on any
// non-2xx) into BullMQ; two worker processes run handlers that fail 20% of the
// time, and one of them is SIGKILLed halfway. Nothing may be lost or forged; a
// delivery may run twice only if the killed worker was running it.
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Queue } from 'bullmq';
import { MitpoWebhooks } from 'mitpo-webhooks';
import { BullMQDeliveryQueue } from 'mitpo-webhooks/bullmq';
import { soakSender } from './soak-sender';

const SECRET = 'whsec_soak_queue_0123456789';
const CONCURRENCY = 64;

export async function soakQueue(total: number): Promise<number> {
  const redisUrl = process.env.REDIS_URL;
  if (!redisUrl) {
    console.error('npm run soak -- --queue needs a Redis: REDIS_URL=redis://127.0.0.1:6379 npm run soak -- --queue 20000');
    return 2;
  }
  const name = `mitpo-soak-${randomUUID()}`;
  const successes = new Uint16Array(total);
  const inspect = new Queue(name, { connection: { url: redisUrl } });
  const workers = [startWorker(name, redisUrl, successes), startWorker(name, redisUrl, successes)];
  await Promise.all(workers.map((worker) => worker.ready));

  // attempts and backoff travel with each job, so they are the receiver's to set.
  const queue = new BullMQDeliveryQueue({ connection: { url: redisUrl }, name, attempts: 50, backoff: 0.01 });
  const webhooks = new MitpoWebhooks({ secret: SECRET, queue });
  const middleware = webhooks.middleware();
  const server = http.createServer((req, res) => middleware(req, res, () => res.writeHead(404).end()));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const sender = soakSender(port, SECRET, CONCURRENCY);
  const { post, counts } = sender;
  let next = 0;
  let killedMidRun: Promise<Set<number>> | undefined;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < total) {
        const seq = next++;
        if (seq === Math.floor(total / 2) && killedMidRun === undefined) killedMidRun = killOneWorker(workers[0]!, inspect);
        const delivery = sender.deliveryFor(seq);
        for (;;) {
          const status = await post(delivery);
          if (status === 200) break;
          counts.retries += 1;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        await sender.sendCopies(seq, delivery, total);
      }
    }),
  );
  const answeredIn = (Date.now() - started) / 1000;
  // The surviving worker drains the queue, taking over the killed one's jobs once their locks lapse.
  const deadline = Date.now() + 120_000;
  while (successes.some((n) => n === 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
  const drainedIn = (Date.now() - started) / 1000;

  sender.close();
  server.close();
  await webhooks.close({ timeout: 5 });
  await workers[1]!.stop();
  const left = await inspect.getJobCounts('waiting', 'active', 'delayed', 'failed');
  await inspect.obliterate({ force: true }).catch(() => undefined);
  await inspect.close();

  const killed = (await killedMidRun) ?? new Set<number>();
  const lost = successes.filter((n) => n === 0).length;
  const twice = [...successes.keys()].filter((seq) => successes[seq]! > 1);
  const twiceKilled = twice.filter((seq) => killed.has(seq)).length;
  const lines: Array<[string, string | number]> = [
    ['deliveries (distinct)', total],
    ['requests sent', counts.requests],
    ['  retries after a non-2xx', counts.retries],
    ['  duplicates sent / answered 200 duplicate', `${counts.duplicatesSent} / ${counts.duplicatesAnswered}`],
    ['  forged sent', counts.forgedSent],
    ['answers by status', sender.statusLine()],
    ['workers', '2, one SIGKILLed halfway through the sending'],
    ['  jobs running (either worker) at the kill', killed.size],
    ['handled at least once', total - lost],
    ['lost (must be 0)', lost],
    ['run twice, running at the kill', twiceKilled],
    ['run twice otherwise (must be 0)', twice.length - twiceKilled],
    ['forged accepted (must be 0)', counts.forgedAccepted],
    ['jobs left waiting/active/delayed/failed', `${left.waiting}/${left.active}/${left.delayed}/${left.failed}`],
    ['time: all answered / all handled', `${answeredIn.toFixed(1)} s / ${drainedIn.toFixed(1)} s (${Math.round(counts.requests / answeredIn)} requests/s answered)`],
  ];
  for (const [label, value] of lines) console.log(`${label.padEnd(48)} ${value}`);
  const ok = lost === 0 && twice.length === twiceKilled && counts.forgedAccepted === 0 && counts.duplicatesAnswered === counts.duplicatesSent;
  console.log(ok ? '\nOK: nothing lost, no forgery accepted, nothing run twice but what the killed worker was running.' : '\nFAILED');
  return ok ? 0 : 1;
}

/**
 * SIGKILLs a worker mid-run. A job may run twice only if it was running at that
 * moment (its handler may have finished, but BullMQ not yet recorded it): the jobs
 * active in Redis just after the kill, either worker's, are those.
 */
async function killOneWorker(worker: ReturnType<typeof startWorker>, inspect: Queue): Promise<Set<number>> {
  worker.kill();
  const active = await inspect.getJobs(['active']);
  return new Set(
    active.map((job) => Number((JSON.parse(Buffer.from(job.data.body, 'base64').toString()) as { data: { dispatch_id: string } }).data.dispatch_id.slice(4))),
  );
}

function startWorker(name: string, redisUrl: string, successes: Uint16Array) {
  const child: ChildProcess = fork(path.join(__dirname, 'soak-queue-worker.ts'), [], {
    execArgv: ['-r', 'ts-node/register/transpile-only'],
    env: { ...process.env, REDIS_URL: redisUrl, SOAK_QUEUE: name, SOAK_SECRET: SECRET },
  });
  const ready = new Promise<void>((resolve) => {
    child.on('message', (m: { ready?: true; handled?: number }) => {
      if (m.ready) resolve();
      if (m.handled !== undefined) successes[m.handled] = Math.min(65_535, successes[m.handled]! + 1);
    });
  });
  return {
    ready,
    kill: () => child.kill('SIGKILL'),
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}
