import { toHex } from '../platform/hex';
import { importHmacKey, webCryptoBytes } from '../platform/web-platform';
import { assertValidSecret } from '../secrets/secret-rules';

const UTF8 = new TextEncoder();

/**
 * Signs a payload the way MITPO does, through WebCrypto.
 *
 * @param payload - the exact body bytes (a string is signed as UTF-8)
 * @param secret - the signing secret as issued, `whsec_` prefix included
 * @returns the `X-MITPO-Signature` value, `sha256=<64 lowercase hex digits>`
 * @throws TypeError (a rejected promise) when the secret is unusable (empty, padded, quoted, only the prefix) or the payload is not bytes or a string
 * @example
 * const header = await sign(JSON.stringify(body), env.MITPO_WEBHOOK_SECRET);
 */
export async function sign(payload: string | Uint8Array, secret: string): Promise<string> {
  assertValidSecret(secret, 'secret');
  if (typeof payload !== 'string' && !(payload instanceof Uint8Array)) {
    throw new TypeError('sign(payload, secret): payload must be a string or a Uint8Array');
  }
  const bytes = typeof payload === 'string' ? UTF8.encode(payload) : webCryptoBytes(payload);
  const key = await importHmacKey(secret, 'sign');
  return `sha256=${toHex(await crypto.subtle.sign('HMAC', key, bytes))}`;
}
