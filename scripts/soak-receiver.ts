// The receiver side of `npm run soak`, in a process of its own so its memory is
// measured alone. Handlers fail at random 20% of the time; each success is
// counted per delivery in a fixed-size array, so the counting itself adds no
// memory as deliveries accumulate.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MemoryReplayStore, MitpoWebhooks } from 'mitpo-webhooks';

const total = Number(process.env.SOAK_TOTAL);
const maxEntries = Number(process.env.SOAK_MAX_ENTRIES);
const successes = new Uint8Array(total);
const store = new MemoryReplayStore({ maxEntries });
const webhooks = new MitpoWebhooks({ secret: process.env.SOAK_SECRET!, replay: store });
let attempts = 0;
webhooks.on(['dispatch.completed', 'dispatch.failed'], async (event) => {
  attempts += 1;
  await new Promise((resolve) => setImmediate(resolve));
  if (Math.random() < 0.2) throw new Error('random failure');
  const seq = Number(event.data.dispatch_id.slice(4));
  successes[seq] = Math.min(255, successes[seq]! + 1);
});

const gc = (globalThis as { gc?: () => void }).gc!;
const memory = () => {
  gc();
  const { rss, heapUsed } = process.memoryUsage();
  return { rss, heapUsed };
};
let peakRss = 0;
let peakHeap = 0;
let atSaturation: { rss: number; heapUsed: number } | undefined;
setInterval(() => {
  const { rss, heapUsed } = process.memoryUsage();
  peakRss = Math.max(peakRss, rss);
  peakHeap = Math.max(peakHeap, heapUsed);
  // Once the store holds maxEntries handled keys it holds all it ever will (its size counts
  // the few claims in flight besides): from then on every completion evicts the oldest key,
  // and the heap must stay flat.
  if (atSaturation === undefined && store.size >= maxEntries) atSaturation = memory();
}, 100).unref();

const middleware = webhooks.middleware();
const server = http.createServer((req, res) => middleware(req, res, () => res.writeHead(404).end()));
const before = memory();
server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
process.on('message', (message: string) => {
  if (message !== 'report') return;
  const after = memory();
  server.close();
  // Exit only once the report is out: a large message is still being written when send() returns.
  process.send!({ successes: Array.from(successes), attempts, before, atSaturation, after, peakRss, peakHeap, storeSize: store.size }, () =>
    process.exit(0),
  );
});
