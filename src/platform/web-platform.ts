import { fromHex, toHex } from './hex';
import type { Platform } from './platform';

const HMAC_SHA256 = { name: 'HMAC', hash: 'SHA-256' } as const;
const UTF8 = new TextEncoder();
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * WebCrypto as it is, for runtimes without `node:crypto` (Cloudflare Workers,
 * Deno, Bun, edge functions; Node has it too). Each secret is imported once as
 * a non-extractable HMAC key, and `crypto.subtle.verify` does the comparison,
 * in constant time by the specification, so no comparison is written here.
 * Everything it offers is asynchronous, so the keys are promises of keys.
 */
export const webPlatform: Platform<Promise<CryptoKey>> = {
  signingKey(secret) {
    return importHmacKey(secret, 'verify');
  },

  async signatureMatches(keys, payload, signatureHex) {
    const signature = fromHex(signatureHex);
    const data = webCryptoBytes(payload);
    const matches = await Promise.all(keys.map(async (key) => crypto.subtle.verify('HMAC', await key, signature, data)));
    return matches.includes(true);
  },

  sha256Hex: sha256HexOf,

  utf8(bytes) {
    try {
      // ignoreBOM keeps a leading U+FEFF, as Node's decoding does: JSON.parse
      // then refuses it on both, rather than one runtime accepting the body.
      return STRICT_UTF8.decode(bytes);
    } catch {
      return undefined;
    }
  },

  // No request context to step out of: Web runtimes have no AsyncLocalStorage without compat flags.
  detached(start) {
    return start();
  },

  // The bytes are a plain Uint8Array already: what handlers get.
  bytes(view) {
    return view;
  },

  // `@opentelemetry/api` is loaded with require() on Node; a Web runtime's module graph has no such load.
  openTelemetry() {
    return undefined;
  },
};

/**
 * One secret as a non-extractable HMAC-SHA256 key for `usage`. The key bytes
 * are zeroed once handed over: `importKey` copies them before it returns.
 */
export function importHmacKey(secret: string, usage: 'sign' | 'verify'): Promise<CryptoKey> {
  const bytes = UTF8.encode(secret);
  try {
    return crypto.subtle.importKey('raw', bytes, HMAC_SHA256, false, [usage]);
  } finally {
    bytes.fill(0);
  }
}

/** The hex SHA-256 of `bytes` through `crypto.subtle.digest`: the default delivery key. */
export async function sha256HexOf(bytes: Uint8Array): Promise<string> {
  return toHex(await crypto.subtle.digest('SHA-256', webCryptoBytes(bytes)));
}

/**
 * `bytes` as WebCrypto takes them: it refuses a view on a SharedArrayBuffer
 * (a body copied out of a worker, say), which Node's crypto takes, so such
 * bytes are copied first and get the same answer on both entries.
 */
export function webCryptoBytes(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  // By its tag, not instanceof: a buffer from another realm (a worker, a vm context) is one too.
  const shared = Object.prototype.toString.call(bytes.buffer) === '[object SharedArrayBuffer]';
  // A copy, never slice(): a Buffer's slice() is a view on the same memory.
  return (shared ? new Uint8Array(bytes) : bytes) as Uint8Array<ArrayBuffer>;
}
