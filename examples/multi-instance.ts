// Two receivers on two ports sharing one Redis, as behind a load balancer: a
// delivery sent to both at once is handled by exactly one of them.
//   REDIS_URL=redis://127.0.0.1:6379 npx ts-node examples/multi-instance.ts
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { MitpoWebhooks } from 'mitpo-webhooks';
import { RedisReplayStore } from 'mitpo-webhooks/redis';
import { sendDelivery, signedDelivery } from 'mitpo-webhooks/testing';

const secret = process.env.MITPO_WEBHOOK_SECRET ?? 'whsec_multi_instance_example';
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export async function startInstance(name: string, onHandled: (instance: string, dispatchId: string) => void) {
  // Fail commands at once while Redis is down (the delivery is answered 503 and
  // MITPO retries) instead of queueing them until it is back.
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  const webhooks = new MitpoWebhooks({ secret, replay: new RedisReplayStore(redis, { prefix: 'mitpo-example:' }) });
  webhooks.on(['dispatch.completed', 'dispatch.failed'], async (event) => onHandled(name, event.data.dispatch_id));

  const middleware = webhooks.middleware({ path: '/webhooks/mitpo' });
  const server = http.createServer((req, res) => middleware(req, res, () => res.writeHead(404).end()));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/mitpo`;
  const stop = async () => {
    server.close();
    redis.disconnect();
  };
  return { url, stop };
}

async function main() {
  const handled: string[] = [];
  const onHandled = (instance: string, id: string) => handled.push(`${id} by ${instance}`);
  const instances = [await startInstance('A', onHandled), await startInstance('B', onHandled)];
  console.log(`Instance A on ${instances[0]!.url}\nInstance B on ${instances[1]!.url}\n`);

  const runId = Date.now().toString(36);
  for (let i = 1; i <= 3; i++) {
    const delivery = signedDelivery({
      event: 'dispatch.completed',
      secret,
      data: { dispatch_id: `dsp_${runId}_${i}`, channel: 'meta_ads', status: 'completed' },
    });
    const answers = await Promise.all(
      instances.map(async ({ url }) => {
        const { status, body } = await sendDelivery(url, delivery);
        return `${status} ${JSON.stringify(body)}`;
      }),
    );
    console.log(`delivery ${i} sent to both at once:\n  A: ${answers[0]}\n  B: ${answers[1]}`);
  }
  console.log(`\nHandled (once each): ${handled.join(', ')}`);
  await Promise.all(instances.map((instance) => instance.stop()));
  return handled.length === 3 ? 0 : 1;
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
