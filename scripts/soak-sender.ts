// The sending side both soak runs share: POSTs on a keep-alive agent, the
// answers counted by status, and for each delivery the copies MITPO's
// at-least-once delivery and an attacker would add: a duplicate of one in five,
// and a forgery (a tampered copy, or another secret's signature) of one in ten.
import http from 'node:http';
import { signedDelivery, type SignedDelivery } from 'mitpo-webhooks/testing';

export function soakSender(port: number, secret: string, concurrency: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const counts = { requests: 0, retries: 0, duplicatesSent: 0, duplicatesAnswered: 0, forgedSent: 0, forgedAccepted: 0, gaveUp: 0 };
  const statuses = new Map<number, number>();

  /** POSTs one delivery and counts its answer. */
  const post = (delivery: SignedDelivery) =>
    new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/webhooks/mitpo', method: 'POST', headers: delivery.headers, agent }, (res) => {
        res.resume();
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          counts.requests += 1;
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          resolve(status);
        });
      });
      req.on('error', reject);
      req.end(delivery.body);
    });

  /** Delivery number `seq`, unique by its dispatch id. */
  const deliveryFor = (seq: number) =>
    signedDelivery({ event: seq % 2 ? 'dispatch.completed' : 'dispatch.failed', secret, data: { dispatch_id: `dsp_${seq}`, channel: 'soak', status: 'done' } });

  /** After delivery `seq` was accepted: its duplicate and its forgery, when it has them. */
  const sendCopies = async (seq: number, delivery: SignedDelivery, total: number) => {
    if (seq % 5 === 0) {
      counts.duplicatesSent += 1;
      if ((await post(delivery)) === 200) counts.duplicatesAnswered += 1;
    }
    if (seq % 10 === 3) {
      counts.forgedSent += 1;
      const forged =
        seq % 20 === 3
          ? { ...delivery, body: delivery.body.replace(`dsp_${seq}`, `dsp_${(seq + 1) % total}`) }
          : signedDelivery({ event: 'dispatch.completed', secret: 'whsec_attacker', data: { dispatch_id: `dsp_${seq}`, channel: 'x', status: 'x' } });
      const answer = await post(forged);
      if (answer >= 200 && answer < 300) counts.forgedAccepted += 1;
    }
  };

  const statusLine = () => [...statuses].sort().map(([status, n]) => `${status}×${n}`).join(' ');
  return { post, deliveryFor, sendCopies, counts, statusLine, close: () => agent.destroy() };
}
