// `npm run soak -- --queue N`: durable processing under load. A receiver queues
// N distinct deliveries (plus duplicates and forgeries, retried like MITPO on any
// non-2xx) into BullMQ; two worker processes run handlers that fail 20% of the
// time, and one of them is SIGKILLed halfway. Nothing may be lost or forged; a
// delivery may run twice only if the killed worker was running it.
import { fork, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Queue } from 'bullmq';
import { MitpoWebhooks } from 'mitpo-webhooks';
import { BullMQDeliveryQueue } from 'mitpo-webhooks/bullmq';
import { jobIdOf } from '../src/bullmq/job-id';
import { signedDelivery } from '../src/testing';
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
  const seen = { attackerRan: 0, deadLetters: new Map<string, number>() };
  const workers = [startWorker(name, redisUrl, successes, seen), startWorker(name, redisUrl, successes, seen)];
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
  let sending = true;
  const attack = attacker(inspect, () => sending);
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
  sending = false;
  const attacked = await attack;
  const answeredIn = (Date.now() - started) / 1000;
  // The surviving worker drains the queue, taking over the killed one's jobs once their locks lapse.
  const deadline = Date.now() + 120_000;
  const settled = async () => {
    const counts = await inspect.getJobCounts('waiting', 'active', 'delayed');
    return (counts.waiting ?? 0) + (counts.active ?? 0) + (counts.delayed ?? 0) === 0;
  };
  while ((successes.some((n) => n === 0) || !(await settled())) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
  // The dead letters' reports reach the parent over IPC: let the last ones arrive.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const drainedIn = (Date.now() - started) / 1000;

  sender.close();
  server.close();
  await webhooks.close({ timeout: 5 });
  await workers[1]!.stop();
  const left = await inspect.getJobCounts('waiting', 'active', 'delayed', 'failed');
  const failedJobs = await inspect.getFailed(0, -1);
  const unreported = failedJobs.filter((job) => {
    const id = dispatchIdOf(job.data.body);
    return !seen.deadLetters.has(id);
  }).length;
  const forgedReported = [...seen.deadLetters.keys()].filter((id) => id.startsWith('atk_')).length;
  const oldReported = [...seen.deadLetters.keys()].filter((id) => id.startsWith('old_')).length;
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
    ['attacker writing to Redis during the run', `${attacked.reAdded} completed jobs re-added under new ids, ${attacked.reKeyed} with altered keys, ${attacked.reHeadered} with altered headers, ${attacked.forged} forged jobs, ${attacked.old} old genuine events`],
    ['  handler runs on what MITPO did not sign (must be 0)', seen.attackerRan],
    ['  dead letters: reported / unreported (must be 0)', `${seen.deadLetters.size} / ${unreported}`],
    ['  forged ones reported (must be 0)', forgedReported],
    ['  old genuine events kept as reported dead letters', `${oldReported} of ${attacked.old}`],
    ['jobs left waiting/active/delayed/failed', `${left.waiting}/${left.active}/${left.delayed}/${left.failed}`],
    ['time: all answered / all handled', `${answeredIn.toFixed(1)} s / ${drainedIn.toFixed(1)} s (${Math.round(counts.requests / answeredIn)} requests/s answered)`],
  ];
  for (const [label, value] of lines) console.log(`${label.padEnd(48)} ${value}`);
  const ok =
    lost === 0 &&
    twice.length === twiceKilled &&
    counts.forgedAccepted === 0 &&
    counts.duplicatesAnswered === counts.duplicatesSent &&
    seen.attackerRan === 0 &&
    unreported === 0 &&
    forgedReported === 0;
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

/**
 * Someone with write access to Redis, while the deliveries flow: completed jobs
 * re-added under new ids, with altered keys and with altered headers, jobs signed
 * with another secret, and genuine events older than maxEventAge. None may run a
 * handler or be run again; the old genuine ones become reported dead letters.
 */
async function attacker(queue: Queue, sending: () => boolean) {
  const done = { reAdded: 0, reKeyed: 0, reHeadered: 0, forged: 0, old: 0 };
  let n = 0;
  while (sending()) {
    n += 1;
    const [completed] = await queue.getJobs(['completed'], 0, 0);
    if (completed !== undefined) {
      await queue.add('mitpo-delivery', completed.data, { jobId: `replayed-${n}` });
      await queue.add('mitpo-delivery', { ...completed.data, deliveryKey: `attacker-key-${n}` }, { jobId: `rekeyed-${n}` });
      await queue.add('mitpo-delivery', { ...completed.data, headers: { ...completed.data.headers, 'x-mitpo-event': 'dispatch.accepted', authorization: 'Bearer stolen' } }, { jobId: `reheadered-${n}` });
      done.reAdded += 1;
      done.reKeyed += 1;
      done.reHeadered += 1;
    }
    const forged = signedDelivery({ event: 'dispatch.completed', secret: 'whsec_attacker', data: { dispatch_id: `atk_${n}`, channel: 'x', status: 'x' } });
    await queue.add('mitpo-delivery', jobData(forged, `forged-key-${n}`), { jobId: `forged-${n}` });
    done.forged += 1;
    const old = signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp: Math.floor(Date.now() / 1000) - 30 * 86_400, data: { dispatch_id: `old_${n}`, channel: 'x', status: 'x' } });
    const oldKey = createHash('sha256').update(old.body).digest('hex');
    await queue.add('mitpo-delivery', jobData(old, oldKey), { jobId: jobIdOf(oldKey) });
    done.old += 1;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return done;
}

function jobData(delivery: { body: string; headers: Record<string, string> }, deliveryKey: string) {
  const headers = Object.fromEntries(Object.entries(delivery.headers).map(([header, value]) => [header.toLowerCase(), value]));
  return { deliveryKey, body: Buffer.from(delivery.body).toString('base64'), headers, receivedAt: Date.now() };
}

function dispatchIdOf(base64: string): string {
  try {
    return String((JSON.parse(Buffer.from(base64, 'base64').toString()) as { data: { dispatch_id: unknown } }).data.dispatch_id);
  } catch {
    return '(unread)';
  }
}

function startWorker(name: string, redisUrl: string, successes: Uint16Array, seen: { attackerRan: number; deadLetters: Map<string, number> }) {
  const child: ChildProcess = fork(path.join(__dirname, 'soak-queue-worker.ts'), [], {
    execArgv: ['-r', 'ts-node/register/transpile-only'],
    env: { ...process.env, REDIS_URL: redisUrl, SOAK_QUEUE: name, SOAK_SECRET: SECRET },
  });
  const ready = new Promise<void>((resolve) => {
    child.on('message', (m: { ready?: true; handled?: number; attackerRan?: string; deadLetter?: string }) => {
      if (m.ready) resolve();
      if (m.attackerRan !== undefined) seen.attackerRan += 1;
      if (m.deadLetter !== undefined) seen.deadLetters.set(m.deadLetter, (seen.deadLetters.get(m.deadLetter) ?? 0) + 1);
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
