import * as crypto from 'node:crypto';

// crypto.hash (Node 20.12+) hashes in one call without building a Hash object,
// which matters on the per-request path; older 20.x falls back.
const oneShotHash = (crypto as { hash?: (algorithm: string, data: string | Uint8Array, encoding: 'hex') => string }).hash;

/** The replay key of a delivery: the SHA-256 of its raw body, hex. Identical bytes, identical key. */
export function deliveryKeyOf(rawBody: string | Uint8Array): string {
  return oneShotHash !== undefined
    ? oneShotHash('sha256', rawBody, 'hex')
    : crypto.createHash('sha256').update(rawBody).digest('hex');
}
