import * as crypto from 'node:crypto';
import { createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

/**
 * HMAC-SHA256 (RFC 2104) is two SHA-256 passes: `H((K ^ opad) || H((K ^ ipad) || m))`.
 * For a body of a few hundred bytes, building and finalising an `Hmac` object
 * costs more than the hashing itself, so a secret is prepared into its two
 * padded blocks, and a small body is verified with two one-shot `crypto.hash`
 * calls over a reused buffer. Bodies above
 * SMALL_BODY_BYTES go through `createHmac`, where copying the body would cost
 * more than the object it saves. Both give the same digest (tested against
 * `createHmac` and RFC 4231's vectors); the comparison is `timingSafeEqual`
 * either way.
 */
const BLOCK_BYTES = 64;
const DIGEST_BYTES = 32;
export const SMALL_BODY_BYTES = 16_384;

// crypto.hash arrived in Node 20.12; on older 20.x every body takes the createHmac path.
// Its string output skips allocating a Buffer, which costs more than the hash at this size.
const oneShotHash = (crypto as unknown as { hash?: (algorithm: string, data: Uint8Array, outputEncoding: 'latin1') => string }).hash;

// One delivery is verified at a time per thread (the check is synchronous), so
// one scratch area serves every key: the framed body, the outer block and the result.
const framed = Buffer.alloc(BLOCK_BYTES + SMALL_BODY_BYTES);
const outer = Buffer.alloc(BLOCK_BYTES + DIGEST_BYTES);
const computed = Buffer.alloc(DIGEST_BYTES);

/**
 * A signing secret prepared for the deliveries it verifies: once at start-up
 * for the middleware, or per call in `verifySignature`, where even preparing
 * it costs less than an `Hmac` object.
 */
export class PreparedSecret {
  private readonly innerPad: Buffer;
  private readonly outerPad: Buffer;
  private readonly secret: string;
  /** For bodies above SMALL_BODY_BYTES, when the secret verifies many deliveries. */
  private readonly keyObject: KeyObject | undefined;

  /** @param longLived - verifies many deliveries: worth turning into a `KeyObject` once, too */
  constructor(secret: string, longLived = false) {
    this.secret = secret;
    this.keyObject = longLived ? createSecretKey(Buffer.from(secret, 'utf8')) : undefined;
    const block = Buffer.alloc(BLOCK_BYTES);
    const bytes = Buffer.from(secret, 'utf8');
    // RFC 2104: a key longer than the block is hashed first, then zero-padded.
    (bytes.length > BLOCK_BYTES ? crypto.createHash('sha256').update(bytes).digest() : bytes).copy(block);
    this.innerPad = Buffer.allocUnsafe(BLOCK_BYTES);
    this.outerPad = Buffer.allocUnsafe(BLOCK_BYTES);
    for (let i = 0; i < BLOCK_BYTES; i++) {
      this.innerPad[i] = block[i]! ^ 0x36;
      this.outerPad[i] = block[i]! ^ 0x5c;
    }
  }

  /** Whether `digest` (32 bytes) is this secret's HMAC of `payload`, compared in constant time. */
  matches(payload: Uint8Array, digest: Buffer): boolean {
    if (oneShotHash === undefined || payload.byteLength > SMALL_BODY_BYTES) {
      return timingSafeEqual(crypto.createHmac('sha256', this.keyObject ?? this.secret).update(payload).digest(), digest);
    }
    this.innerPad.copy(framed, 0);
    framed.set(payload, BLOCK_BYTES);
    const inner = oneShotHash('sha256', framed.subarray(0, BLOCK_BYTES + payload.byteLength), 'latin1');
    this.outerPad.copy(outer, 0);
    outer.write(inner, BLOCK_BYTES, DIGEST_BYTES, 'latin1');
    computed.write(oneShotHash('sha256', outer, 'latin1'), 0, DIGEST_BYTES, 'latin1');
    // The pads are derived from the secret: keep them no longer than the check.
    framed.fill(0, 0, BLOCK_BYTES);
    outer.fill(0, 0, BLOCK_BYTES);
    return timingSafeEqual(computed, digest);
  }
}
