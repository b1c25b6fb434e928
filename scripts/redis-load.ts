// Load figure for the Redis replay store: N distinct deliveries, each sent to two
// instances at once, C pairs in flight; prints how often the handlers ran (must
// equal N) and the time taken.
//   REDIS_URL=redis://127.0.0.1:6379 npm run load:redis -- [N] [C]
import { sendDelivery, signedDelivery } from 'mitpo-webhooks/testing';
import { startInstance } from '../examples/multi-instance';

async function main(): Promise<number> {
  const total = Number(process.argv[2] ?? 5000);
  const concurrency = Number(process.argv[3] ?? 32);
  const secret = process.env.MITPO_WEBHOOK_SECRET ?? 'whsec_multi_instance_example';
  const runs = new Map<string, number>();
  const onHandled = (_instance: string, id: string) => runs.set(id, (runs.get(id) ?? 0) + 1);
  const instances = [await startInstance('A', onHandled), await startInstance('B', onHandled)];
  const statuses = new Map<number, number>();
  const runId = Date.now().toString(36);

  const deliveries = Array.from({ length: total }, (_, i) =>
    signedDelivery({ event: 'dispatch.completed', secret, data: { dispatch_id: `dsp_${runId}_${i}`, channel: 'load', status: 'completed' } }),
  );
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const delivery = deliveries[next++]!;
        await Promise.all(
          instances.map(async ({ url }) => {
            const { status } = await sendDelivery(url, delivery);
            statuses.set(status, (statuses.get(status) ?? 0) + 1);
          }),
        );
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await Promise.all(instances.map((instance) => instance.stop()));

  const handlerRuns = [...runs.values()].reduce((a, b) => a + b, 0);
  const twice = [...runs.values()].filter((n) => n > 1).length;
  console.log(`deliveries: ${total} distinct, each sent to 2 instances at once (${concurrency} pairs in flight)`);
  console.log(`answers: ${[...statuses].map(([s, n]) => `${s}×${n}`).join(', ')}`);
  console.log(`handler runs: ${handlerRuns} (expected ${total}); deliveries run twice: ${twice}; never run: ${total - runs.size}`);
  console.log(`time: ${seconds.toFixed(2)} s (${Math.round((2 * total) / seconds)} requests/s)`);
  return handlerRuns === total && twice === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
