// `npm run bench -- --web`: what verification costs through mitpo-webhooks/web
// (WebCrypto, everything async) beside the Node entry (node:crypto), in one Node
// process, on the same bodies and headers: verifySignature(), and verify() (every
// check but replay). For information: the Node entry stays the one to use on Node.
import os from 'node:os';
import * as node from 'mitpo-webhooks';
import * as web from 'mitpo-webhooks/web';
import { signedDelivery } from 'mitpo-webhooks/testing';

const SECRET = 'whsec_bench_0123456789abcdef';

function delivery(size) {
  const data = { dispatch_id: 'dsp_web', channel: 'meta_ads', status: 'completed', notes: '' };
  data.notes = 'x'.repeat(Math.max(0, size - signedDelivery({ event: 'dispatch.completed', secret: SECRET, data }).body.length));
  const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data });
  return { raw: Buffer.from(body), headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v])) };
}

/**
 * Microseconds per call of `fn` (awaited), the median of several timed batches:
 * wall time, and the process's CPU time (every thread's: WebCrypto on Node runs
 * on libuv's pool, so a call's wall time includes the hand-offs).
 */
async function microseconds(fn, { batches, minMs }) {
  let n = 32;
  for (;;) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await fn();
    if (Number(process.hrtime.bigint() - t) / 1e6 >= minMs / 4) break;
    n *= 2;
  }
  const wall = [];
  const cpu = [];
  for (let b = 0; b < batches; b++) {
    const t = process.hrtime.bigint();
    const c = process.cpuUsage();
    for (let i = 0; i < n; i++) await fn();
    const used = process.cpuUsage(c);
    wall.push(Number(process.hrtime.bigint() - t) / 1e3 / n);
    cpu.push((used.user + used.system) / n);
  }
  const median = (list) => list.sort((a, b) => a - b)[Math.floor(list.length / 2)];
  return { wall: median(wall), cpu: median(cpu) };
}

export async function runWebBench({ quick }) {
  console.log(`mitpo-webhooks/web beside the Node entry, in-process: node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'}`);
  console.log('µs per call, one at a time (median of batches, best of interleaved rounds); lower is better\n');
  const options = quick ? { batches: 5, minMs: 60 } : { batches: 7, minMs: 150 };
  const nodeWebhooks = new node.MitpoWebhooks({ secret: SECRET, replay: false });
  const webWebhooks = new web.MitpoWebhooks({ secret: SECRET, replay: false });
  for (const size of [300, 65_536]) {
    const { raw, headers } = delivery(size);
    const signature = headers['x-mitpo-signature'];
    const cases = {
      'verifySignature, node': () => node.verifySignature(raw, signature, SECRET),
      'verifySignature, /web': () => web.verifySignature(raw, signature, SECRET),
      'verify(), node': () => nodeWebhooks.verify({ rawBody: raw, headers }),
      'verify(), /web': () => webWebhooks.verify({ rawBody: raw, headers }),
    };
    if (!(await cases['verifySignature, /web']()) || !cases['verifySignature, node']()) throw new Error('the bench delivery does not verify');
    const best = Object.fromEntries(Object.keys(cases).map((name) => [name, { wall: Infinity, cpu: Infinity }]));
    // Interleaved, so drift in the machine's speed touches each the same.
    for (let round = 0; round < (quick ? 2 : 3); round++) {
      for (const [name, fn] of Object.entries(cases)) {
        const { wall, cpu } = await microseconds(fn, options);
        best[name] = { wall: Math.min(best[name].wall, wall), cpu: Math.min(best[name].cpu, cpu) };
      }
    }
    console.log(`${size === 300 ? '300 B' : '64 KB'}:${' '.repeat(21)}wall µs   CPU µs`);
    for (const name of Object.keys(cases)) {
      console.log(`  ${name.padEnd(24)} ${best[name].wall.toFixed(1).padStart(8)} ${best[name].cpu.toFixed(1).padStart(8)}`);
    }
    const ratio = (what, key) => (best[`${what}, /web`][key] / best[`${what}, node`][key]).toFixed(2);
    console.log(`  /web ÷ node: verifySignature ${ratio('verifySignature', 'wall')} wall, ${ratio('verifySignature', 'cpu')} CPU; verify() ${ratio('verify()', 'wall')} wall, ${ratio('verify()', 'cpu')} CPU`);
  }
}
