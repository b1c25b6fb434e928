import { createHmac } from 'node:crypto';
import { assertValidSecret } from '../secrets/secret-rules';

/**
 * Signs a payload the way MITPO does.
 *
 * @param payload - the exact body bytes (a string is signed as UTF-8)
 * @param secret - the signing secret as issued, `whsec_` prefix included
 * @returns the `X-MITPO-Signature` value, `sha256=<64 lowercase hex digits>`
 * @throws TypeError when the secret is unusable (empty, padded, quoted, only the prefix) or the payload is not bytes or a string
 * @example
 * const header = sign(JSON.stringify(body), process.env.MITPO_WEBHOOK_SECRET!);
 */
export function sign(payload: string | Uint8Array, secret: string): string {
  assertValidSecret(secret, 'secret');
  if (typeof payload !== 'string' && !(payload instanceof Uint8Array)) {
    throw new TypeError('sign(payload, secret): payload must be a string, Buffer or Uint8Array');
  }
  return `sha256=${createHmac('sha256', secret).update(payload).digest('hex')}`;
}
