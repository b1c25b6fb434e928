// One receiver of `npm run bench -- --queue`, in a process of its own: inline with a
// RedisReplayStore, or queued on BullMQ with its worker in yet another process (so
// this process's CPU is the receiver's alone). argv: mode (inline|queued), handler ms.
import { fork } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import Redis from 'ioredis';
import { MitpoWebhooks } from 'mitpo-webhooks';
import { RedisReplayStore } from 'mitpo-webhooks/redis';
import { BullMQDeliveryQueue } from 'mitpo-webhooks/bullmq';
import { serveForBench } from './serve-for-bench.mjs';

export const SECRET = 'whsec_bench_0123456789abcdef';
const [mode, handlerMs, role] = process.argv.slice(2);
const redisUrl = process.env.REDIS_URL;
const name = `mitpo-bench-${process.env.BENCH_RUN}-${handlerMs}`;
const handler = async () => {
  if (Number(handlerMs) > 0) await new Promise((resolve) => setTimeout(resolve, Number(handlerMs)));
};

if (role === 'worker') {
  const webhooks = new MitpoWebhooks({ secret: SECRET, queue: new BullMQDeliveryQueue({ connection: { url: redisUrl }, name }) });
  webhooks.onAny(handler);
  webhooks.startWorker({ concurrency: 64 });
  process.send({ ready: true });
} else {
  let webhooks;
  let worker;
  if (mode === 'queued') {
    // A short maxEventAge: what the bench leaves in Redis expires within minutes.
    webhooks = new MitpoWebhooks({ secret: SECRET, maxEventAge: 60, queue: new BullMQDeliveryQueue({ connection: { url: redisUrl }, name }) });
    worker = fork(fileURLToPath(import.meta.url), [mode, handlerMs, 'worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise((resolve) => worker.once('message', resolve));
  } else {
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    webhooks = new MitpoWebhooks({ secret: SECRET, maxEventAge: 60, replay: new RedisReplayStore(redis, { prefix: `${name}:` }) });
    webhooks.onAny(handler);
  }
  const middleware = webhooks.middleware();
  serveForBench(
    http.createServer((req, res) => middleware(req, res, () => res.writeHead(404).end())),
    { beforeExit: async () => worker?.kill('SIGKILL') },
  );
}
