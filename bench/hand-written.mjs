// What a careful engineer writes by hand with node:crypto: the baseline that
// mitpo-webhooks is measured against.
import { createHmac, timingSafeEqual } from 'node:crypto';

export function verifyByHand(rawBody, headers, secret, toleranceSeconds) {
  const signature = headers['x-mitpo-signature'];
  const timestamp = Number(headers['x-mitpo-timestamp']);
  if (typeof signature !== 'string' || signature.length !== 71 || !signature.startsWith('sha256=')) return undefined;
  if (!Number.isInteger(timestamp) || Math.abs(Date.now() / 1000 - timestamp) > toleranceSeconds) return undefined;
  const expected = createHmac('sha256', secret).update(rawBody).digest();
  const given = Buffer.from(signature.slice(7), 'hex');
  if (given.length !== 32 || !timingSafeEqual(expected, given)) return undefined;
  return JSON.parse(rawBody.toString('utf8'));
}
