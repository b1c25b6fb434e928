// In-process micro-benchmark: verifySignature and verify() against the bare
// node:crypto floor, on the same bodies and headers.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { MitpoWebhooks, verifySignature } from 'mitpo-webhooks';
import { signedDelivery } from 'mitpo-webhooks/testing';
import { verifyByHand } from './hand-written.mjs';

const SECRET = 'whsec_bench_0123456789abcdef';

function delivery(size) {
  const data = { dispatch_id: 'dsp_micro', channel: 'meta_ads', status: 'completed', notes: '' };
  data.notes = 'x'.repeat(Math.max(0, size - signedDelivery({ event: 'dispatch.completed', secret: SECRET, data }).body.length));
  const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data });
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return { raw: Buffer.from(body), headers: lower };
}

/** Operations per second of `fn`, the median of several timed batches. */
async function opsPerSecond(fn, { batches = 7, minMs = 150 } = {}) {
  let n = 64;
  for (;;) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await fn();
    if (Number(process.hrtime.bigint() - t) / 1e6 >= minMs / 4) break;
    n *= 2;
  }
  const rates = [];
  for (let b = 0; b < batches; b++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await fn();
    rates.push(n / (Number(process.hrtime.bigint() - t) / 1e9));
  }
  return rates.sort((a, b) => a - b)[Math.floor(rates.length / 2)];
}

export async function runMicro({ quick }) {
  const rows = [];
  for (const size of [300, 65_536]) {
    const { raw, headers } = delivery(size);
    const signature = headers['x-mitpo-signature'];
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: false });
    const floor = () => timingSafeEqual(createHmac('sha256', SECRET).update(raw).digest(), Buffer.from(signature.slice(7), 'hex'));
    const options = quick ? { batches: 5, minMs: 60 } : {};
    // Interleaved, so drift in the machine's speed touches each the same.
    const results = { floor: [], verifySignature: [], handWritten: [], verify: [] };
    for (let round = 0; round < (quick ? 2 : 3); round++) {
      results.floor.push(await opsPerSecond(floor, options));
      results.verifySignature.push(await opsPerSecond(() => verifySignature(raw, signature, SECRET), options));
      results.handWritten.push(await opsPerSecond(() => verifyByHand(raw, headers, SECRET, 300), options));
      results.verify.push(await opsPerSecond(() => webhooks.verify({ rawBody: raw, headers }), options));
    }
    const best = (list) => Math.max(...list);
    rows.push({ size, floor: best(results.floor), verifySignature: best(results.verifySignature), handWritten: best(results.handWritten), verify: best(results.verify) });
  }
  return rows;
}
