import { AsyncResource } from 'node:async_hooks';
import { isUtf8 } from 'node:buffer';
import { createHash, createHmac, createSecretKey, hash, timingSafeEqual, type KeyObject } from 'node:crypto';
import { loadOtelApi } from '../telemetry/otel-api';
import type { Platform } from './platform';

/**
 * Node's cryptography, used as it is: `createHmac` over a `KeyObject` and
 * `timingSafeEqual`. The key lives in Node's own key storage; the buffer it is
 * made from is zeroed at once.
 */
export const nodePlatform: Platform<KeyObject> = {
  signingKey(secret) {
    const bytes = Buffer.from(secret, 'utf8');
    try {
      return createSecretKey(bytes);
    } finally {
      bytes.fill(0);
    }
  },

  signatureMatches(keys, payload, signatureHex) {
    const given = Buffer.from(signatureHex, 'hex');
    return keys.some((key) => timingSafeEqual(createHmac('sha256', key).update(payload).digest(), given));
  },

  sha256Hex: sha256HexOf,

  utf8(bytes) {
    if (!isUtf8(bytes)) return undefined;
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  },

  detached(start) {
    return OUTSIDE_ANY_REQUEST.runInAsyncScope(start);
  },

  bytes: bufferOf,

  openTelemetry: loadOtelApi,
};

/** `view` as a Buffer over the same memory: a Buffer as it is, other bytes without a copy. */
export function bufferOf(view: Uint8Array): Buffer {
  return Buffer.isBuffer(view) ? view : Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

/** The async context this module was loaded in: the app's start-up, not a request. */
const OUTSIDE_ANY_REQUEST = new AsyncResource('mitpo-webhooks');

/** The hex SHA-256 of `bytes`: `crypto.hash` where Node has it (20.12+), the same digest through `createHash` before. */
export function sha256HexOf(bytes: Uint8Array | string): string {
  // `hash` is undefined before Node 20.12, where @types/node still declares it.
  return typeof hash === 'function' ? hash('sha256', bytes, 'hex') : createHash('sha256').update(bytes).digest('hex');
}
