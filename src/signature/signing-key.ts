import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

/**
 * One signing secret, held as a `KeyObject` so its bytes live in Node's own
 * key storage rather than in a JavaScript string or buffer on every delivery.
 * The buffer it is made from is zeroed at once.
 */
export class SigningKey {
  readonly #key: KeyObject;

  constructor(secret: string) {
    const bytes = Buffer.from(secret, 'utf8');
    try {
      this.#key = createSecretKey(bytes);
    } finally {
      bytes.fill(0);
    }
  }

  /** Whether `digest` (32 bytes) is this key's HMAC-SHA256 of `payload`, compared in constant time. */
  matches(payload: Uint8Array, digest: Buffer): boolean {
    return timingSafeEqual(createHmac('sha256', this.#key).update(payload).digest(), digest);
  }
}

/**
 * True when `digest` is the HMAC of `payload` under any of `keys` (a rotation
 * has several). Each comparison is constant-time over the fixed 32 bytes, so
 * timing tells an attacker nothing about how close a guess was.
 */
export function matchesAnyKey(keys: readonly SigningKey[], payload: Uint8Array, digest: Buffer): boolean {
  return keys.some((key) => key.matches(payload, digest));
}
