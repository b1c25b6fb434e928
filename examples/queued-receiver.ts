// Durable processing: a receiver that verifies, queues and answers at once, and a
// worker in another process that runs the handlers, with retries and dead
// letters, the two sharing one Redis.
//   REDIS_URL=redis://127.0.0.1:6379 npm run example:queued
// runs both (the worker as a child process) and sends three deliveries; or run
// each part by itself, as in production:
//   node -r ts-node/register/transpile-only examples/queued-receiver.ts receiver
//   node -r ts-node/register/transpile-only examples/queued-receiver.ts worker
import { fork } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MitpoWebhooks } from 'mitpo-webhooks';
import { BullMQDeliveryQueue } from 'mitpo-webhooks/bullmq';
import { sendDelivery } from 'mitpo-webhooks/testing';

const secret = process.env.MITPO_WEBHOOK_SECRET ?? 'whsec_queued_example';
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const queueName = process.env.QUEUE_NAME ?? 'mitpo-example';

/** Both processes build the receiver the same way: same secret, same queue. */
function createWebhooks(): MitpoWebhooks {
  const queue = new BullMQDeliveryQueue({ connection: { url: redisUrl }, name: queueName, attempts: 3, backoff: 1 });
  return new MitpoWebhooks({ secret, queue });
}

/** The receiving process: every check, then the delivery is queued and answered 200 {"queued": true}. */
export async function startReceiver(port = 0) {
  const webhooks = createWebhooks();
  const middleware = webhooks.middleware({ path: '/webhooks/mitpo' });
  const server = http.createServer((req, res) => middleware(req, res, () => res.writeHead(404).end()));
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/mitpo`;
  const stop = async () => {
    await webhooks.close({ timeout: 5 });
    server.close();
  };
  return { url, stop };
}

/** The worker process: the handlers, retried with backoff; a delivery that fails every attempt is a dead letter. */
export function startWorker(onHandled: (line: string) => void) {
  const webhooks = createWebhooks();
  webhooks.on('dispatch.completed', async (event, ctx) => {
    // ctx.deliveryKey is the same on every attempt: the key for your own idempotency records.
    onHandled(`dispatch ${event.data.dispatch_id} is live (attempt ${ctx.attempt}, delivery ${ctx.deliveryKey.slice(0, 12)}…)`);
  });
  webhooks.on('dispatch.failed', async (event, ctx) => {
    if (ctx.attempt < 2) throw new Error('the CRM is down (fails on the first attempt, to show a retry)');
    onHandled(`dispatch ${event.data.dispatch_id} failed, recorded on attempt ${ctx.attempt}`);
  });
  webhooks.onDeadLetter((event, ctx, error) => onHandled(`dead letter ${ctx.deliveryKey}: ${error.message}`));
  webhooks.startWorker({ concurrency: 10 });
  return { stop: () => webhooks.close({ timeout: 5 }) };
}

async function main(): Promise<number> {
  const role = process.argv[2];
  if (role === 'worker') {
    const worker = startWorker((line) => (process.send ? process.send(line) : console.log(line)));
    process.once('SIGTERM', () => void worker.stop().then(() => process.exit(0)));
    if (process.send) process.send('ready');
    else console.log(`worker on queue ${queueName} (${redisUrl})`);
    return new Promise(() => {});
  }
  if (role === 'receiver') {
    const { url } = await startReceiver(Number(process.env.PORT ?? 3000));
    console.log(`receiver on ${url}, queueing on ${queueName} (${redisUrl})`);
    return new Promise(() => {});
  }

  const worker = fork(__filename, ['worker'], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const lines: string[] = [];
  worker.on('message', (line) => {
    if (line === 'ready') return;
    lines.push(String(line));
    console.log(`  worker: ${String(line)}`);
  });
  await new Promise<void>((resolve) => worker.once('message', () => resolve()));
  const receiver = await startReceiver();
  console.log(`receiver on ${receiver.url}; worker in process ${worker.pid}\n`);
  for (const event of ['dispatch.completed', 'dispatch.failed'] as const) {
    const { status, body } = await sendDelivery(receiver.url, { event, secret });
    console.log(`${event}: answered ${status} ${JSON.stringify(body)} at once`);
  }
  // Both handled: the completed one at once, the failed one on its retry a second later.
  const deadline = Date.now() + 15_000;
  while (lines.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  await receiver.stop();
  worker.kill('SIGTERM');
  return lines.length === 2 ? 0 : 1;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
