import { WebhookVerificationError } from '../errors';

/**
 * The body as a Buffer without copying bytes that already are one. A string is
 * taken as the UTF-8 it was decoded from (what a text body parser produces).
 */
export function asBuffer(rawBody: unknown): Buffer {
  if (Buffer.isBuffer(rawBody)) return rawBody;
  if (rawBody instanceof Uint8Array) return Buffer.from(rawBody.buffer, rawBody.byteOffset, rawBody.byteLength);
  if (typeof rawBody === 'string') return Buffer.from(rawBody, 'utf8');
  throw new WebhookVerificationError('body_read_failed', 'rawBody must be a Buffer, a Uint8Array or a string');
}
