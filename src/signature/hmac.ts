import { createHmac } from 'node:crypto';
import type { PreparedSecret } from './prepared-secret';

/** Bytes as MITPO signs them: a string is taken as UTF-8, never re-encoded otherwise. */
export type Payload = string | Uint8Array;

export function hmacDigest(payload: Payload, secret: string): Buffer {
  return createHmac('sha256', secret).update(payload).digest();
}

/**
 * True when `digest` is the HMAC of `payload` under any of `secrets`.
 * Every comparison is constant-time over the fixed 32-byte digest, so timing
 * tells an attacker nothing about how close a guess was.
 */
export function digestMatchesAny(payload: Uint8Array, digest: Buffer, secrets: readonly PreparedSecret[]): boolean {
  for (const secret of secrets) {
    if (secret.matches(payload, digest)) return true;
  }
  return false;
}
