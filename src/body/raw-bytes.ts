import { bufferOf } from '../platform/node-platform';

/**
 * The body as a Buffer, without copying bytes that already are one; a string is
 * taken as the UTF-8 it was decoded from (what a text body parser keeps).
 * Anything else is not a body: `undefined`.
 */
export function rawBytesOf(value: unknown): Buffer | undefined {
  if (value instanceof Uint8Array) return bufferOf(value);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return undefined;
}
