import { hmacDigest, type Payload } from './hmac';
import { assertValidSecret } from '../secrets/secret-rules';

/**
 * Signs a payload the way MITPO does.
 *
 * @param payload - the exact body bytes (a string is signed as UTF-8)
 * @param secret - the signing secret as issued, `whsec_` prefix included
 * @returns the `X-MITPO-Signature` value, `sha256=<64 lowercase hex digits>`
 * @throws TypeError when the secret is empty, not a string, or has surrounding whitespace
 * @example
 * const header = sign(JSON.stringify(body), process.env.MITPO_WEBHOOK_SECRET!);
 */
export function sign(payload: Payload, secret: string): string {
  assertValidSecret(secret, 'secret');
  if (typeof payload !== 'string' && !(payload instanceof Uint8Array)) {
    throw new TypeError('sign(payload, secret): payload must be a string, Buffer or Uint8Array');
  }
  return `sha256=${hmacDigest(payload, secret).toString('hex')}`;
}
