import { createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';

/** Bytes as MITPO signs them: a string is taken as UTF-8, never re-encoded otherwise. */
export type Payload = string | Uint8Array;

/** A secret as a string, or already as a key (which spares re-encoding it on every delivery). */
export type SigningKey = string | KeyObject;

export function hmacDigest(payload: Payload, secret: SigningKey): Buffer {
  return createHmac('sha256', secret).update(payload).digest();
}

/**
 * True when `digest` is the HMAC of `payload` under any of `secrets`.
 * Every comparison is constant-time over the fixed 32-byte digest, so timing
 * tells an attacker nothing about how close a guess was.
 */
export function digestMatchesAny(payload: Payload, digest: Buffer, secrets: readonly SigningKey[]): boolean {
  for (const secret of secrets) {
    if (timingSafeEqual(hmacDigest(payload, secret), digest)) return true;
  }
  return false;
}
