// What a careful engineer writes by hand with node:crypto: the baselines that
// mitpo-webhooks is measured against.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

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

/**
 * A hand-written replay check: the SHA-256 of the body, looked up in two Maps
 * that hold at most 100 000 keys between them. When the newer one fills, the
 * older is dropped (its keys forgotten early, as any bounded store must), so
 * eviction costs nothing per request. Returns false for a body seen before.
 */
export function createReplayCheckByHand(limit = 100_000) {
  let older = new Map();
  let newer = new Map();
  return function seenBefore(rawBody) {
    const key = createHash('sha256').update(rawBody).digest('hex');
    if (newer.has(key) || older.has(key)) return false;
    if (newer.size >= limit / 2) {
      older = newer;
      newer = new Map();
    }
    newer.set(key, Date.now());
    return true;
  };
}
