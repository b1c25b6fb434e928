import { createHmac, timingSafeEqual } from 'node:crypto';
import type { PreparedSecret } from './prepared-secret';

/** Bytes as MITPO signs them: a string is taken as UTF-8, never re-encoded otherwise. */
export type Payload = string | Uint8Array;

/** A secret as a string, or prepared once for the many deliveries it verifies. */
export type SigningKey = string | PreparedSecret;

export function hmacDigest(payload: Payload, secret: string): Buffer {
  return createHmac('sha256', secret).update(payload).digest();
}

/**
 * True when `digest` is the HMAC of `payload` under any of `secrets`.
 * Every comparison is constant-time over the fixed 32-byte digest, so timing
 * tells an attacker nothing about how close a guess was.
 */
export function digestMatchesAny(payload: Payload, digest: Buffer, secrets: readonly SigningKey[]): boolean {
  for (const secret of secrets) {
    const matched =
      typeof secret !== 'string' && typeof payload !== 'string'
        ? secret.matches(payload, digest)
        : timingSafeEqual(createHmac('sha256', typeof secret === 'string' ? secret : secret.key).update(payload).digest(), digest);
    if (matched) return true;
  }
  return false;
}
