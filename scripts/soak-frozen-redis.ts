// `npm run soak -- --frozen-redis`: what replays of a captured 1 MiB delivery cost the
// receiver's heap while Redis hangs. A receiver on a BullMQ queue reaches Redis
// through a TCP proxy; once the proxy freezes, 40 copies of one 1 MiB delivery arrive
// at once. Prints the heap they hold while waiting (peak over the baseline) and after
// enqueueTimeout; needs REDIS_URL.
import { Queue } from 'bullmq';
import { MitpoWebhooks } from '../src';
import { BullMQDeliveryQueue } from '../src/bullmq';
import { signedDelivery } from '../src/testing';
import { freezingProxy } from '../test/helpers/freezing-proxy';

const SECRET = 'whsec_soak_0123456789';
const COPIES = 40;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const heap = () => {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
};

export async function soakFrozenRedis(): Promise<number> {
  if (!process.env.REDIS_URL) {
    console.error('--frozen-redis needs REDIS_URL, e.g. REDIS_URL=redis://127.0.0.1:6379');
    return 2;
  }
  const proxy = await freezingProxy(process.env.REDIS_URL);
  const name = `soak-frozen-${process.pid}`;
  const queue = new BullMQDeliveryQueue({ connection: { url: proxy.url }, name, enqueueTimeout: 5 });
  const webhooks = new MitpoWebhooks({ secret: SECRET, queue });
  try {
    const warm = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    await webhooks.receive({ rawBody: warm.body, headers: warm.headers });
    const captured = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 'captured', channel: 'meta_ads', status: 'completed', notes: 'x'.repeat(1000 * 1024) } });
    const baseline = heap();
    proxy.freeze();
    // Each copy as a receiver gets it: its own bytes, as a framework reads them.
    const answers = Array.from({ length: COPIES }, () =>
      webhooks.receive({ rawBody: Buffer.from(captured.body), headers: { ...captured.headers } }),
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const waiting = heap() - baseline;
    const settled = await Promise.all(answers);
    const after = heap() - baseline;
    const codes = new Map<string, number>();
    for (const { status } of settled) codes.set(String(status), (codes.get(String(status)) ?? 0) + 1);
    console.log(`${COPIES} copies of one ${mb(Buffer.byteLength(captured.body))} delivery with Redis frozen`);
    console.log(`  heap held while they wait:   ${mb(waiting)}`);
    console.log(`  heap after enqueueTimeout:   ${mb(after)}`);
    console.log(`  answers: ${[...codes].map(([status, n]) => `${n} × ${status}`).join(', ')}`);
    return 0;
  } finally {
    await proxy.close();
    await webhooks.close({ timeout: 1 });
    const cleanup = new Queue(name, { connection: { url: process.env.REDIS_URL } });
    await cleanup.obliterate({ force: true }).catch(() => undefined);
    await cleanup.close();
  }
}
