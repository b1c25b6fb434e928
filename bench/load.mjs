// The load generator, in a process of its own: signs every delivery before the
// timed window (so signing never limits throughput), then drives one receiver
// with autocannon, giving every request a body of its own.
import { randomUUID, createHmac } from 'node:crypto';
import autocannon from 'autocannon';
import { signedDelivery } from 'mitpo-webhooks/testing';

const SECRET = 'whsec_bench_0123456789abcdef';
let prepared = [];
let batch = 0;

const padding = new Map();

/** A dispatch.completed delivery of about `size` bytes, unique by its dispatch_id. */
function mitpoDelivery(size, id) {
  const data = { dispatch_id: id, channel: 'meta_ads', status: 'completed', provider_resource_id: '23851234567890', notes: '' };
  if (!padding.has(size)) {
    const base = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data }).body.length;
    padding.set(size, 'x'.repeat(Math.max(0, size - base)));
  }
  data.notes = padding.get(size);
  const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data });
  return { body, headers: { 'content-type': headers['Content-Type'], 'x-mitpo-signature': headers['X-MITPO-Signature'], 'x-mitpo-timestamp': headers['X-MITPO-Timestamp'], 'x-mitpo-event': headers['X-MITPO-Event'] } };
}

/** GitHub's equivalent for octokit: same size, same HMAC-SHA256 over the raw body. */
function githubDelivery(size, id) {
  const payload = { ref: 'refs/heads/main', after: id, repository: { id: 1, full_name: 'mitpo/bench' }, notes: '' };
  payload.notes = 'x'.repeat(Math.max(0, size - JSON.stringify(payload).length));
  const body = JSON.stringify(payload);
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'x-github-event': 'push',
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`,
    },
  };
}

function forge(headers, name) {
  const signature = headers[name];
  headers[name] = signature.slice(0, -1) + (signature.endsWith('0') ? '1' : '0');
}

process.on('message', async (message) => {
  if (message.cmd === 'prepare') {
    batch += 1;
    const make = message.github ? githubDelivery : mitpoDelivery;
    prepared = Array.from({ length: message.amount }, (_, i) => make(message.size, `dsp_${process.pid}_${batch}_${i}`));
    // Forged: well-formed headers, a signature one hex digit off, so every check up to the HMAC runs.
    if (message.forged) for (const { headers } of prepared) forge(headers, message.github ? 'x-hub-signature-256' : 'x-mitpo-signature');
    process.send({ ready: true });
  } else if (message.cmd === 'go') {
    let next = 0;
    const started = process.hrtime.bigint();
    const result = await autocannon({
      url: message.url,
      method: 'POST',
      connections: message.connections,
      ...(message.rate ? { overallRate: message.rate } : {}),
      amount: prepared.length,
      requests: [
        {
          setupRequest: (req) => {
            const delivery = prepared[next++];
            return { ...req, body: delivery.body, headers: delivery.headers };
          },
        },
      ],
    });
    process.send({
      // autocannon's own average is per whole second, which a short run distorts.
      rps: (result['2xx'] + result.non2xx) / (Number(process.hrtime.bigint() - started) / 1e9),
      p50: result.latency.p50,
      p99: result.latency.p99,
      ok: result['2xx'],
      refused: result.non2xx,
      notOk: result.non2xx + result.errors + result.timeouts,
      sent: next,
    });
  } else if (message === 'exit' || message.cmd === 'exit') {
    process.exit(0);
  }
});
process.send({ started: true });
