import { WebhookVerificationError } from '../errors';
import { sanitizeText } from '../text/sanitize-text';
import type { DeliveryHeaders } from './delivery-headers';

/** A JSON media type (`application/json`, `application/cloudevents+json`...), parameters after `;` allowed. */
const JSON_CONTENT_TYPE = /^\s*application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/**
 * A body that says it is not JSON is refused before it is read (415). A missing
 * Content-Type is allowed: MITPO always sends one, and refusing its absence would
 * only break hand-written tests. A compressed body is refused too: the HMAC is
 * over the bytes MITPO sent, and inflating first is a decompression-bomb surface
 * MITPO itself never uses.
 *
 * @throws WebhookVerificationError `unsupported_media_type`
 */
export function checkContentType(headers: DeliveryHeaders): void {
  const contentType = headers['content-type'];
  if (!isJson(contentType)) {
    const mediaType = String(contentType).split(';', 1)[0]!.trim().toLowerCase();
    throw new WebhookVerificationError('unsupported_media_type', `Content-Type must be application/json (got "${sanitizeText(mediaType)}")`);
  }
  const contentEncoding = headers['content-encoding'];
  if (!isUncompressed(contentEncoding)) {
    const encoding = String(contentEncoding).trim().toLowerCase();
    throw new WebhookVerificationError('unsupported_media_type', `Content-Encoding "${sanitizeText(encoding)}" is not supported; send the body uncompressed`);
  }
}

/** Whether {@link checkContentType} lets these headers through, without building its refusal. */
export function acceptsContentType(headers: DeliveryHeaders): boolean {
  return isJson(headers['content-type']) && isUncompressed(headers['content-encoding']);
}

function isJson(contentType: DeliveryHeaders[string]): boolean {
  return contentType === undefined || JSON_CONTENT_TYPE.test(String(contentType));
}

function isUncompressed(contentEncoding: DeliveryHeaders[string]): boolean {
  if (contentEncoding === undefined) return true;
  const encoding = String(contentEncoding).trim().toLowerCase();
  return encoding === '' || encoding === 'identity';
}

/**
 * The declared body length, when the header is one well-formed number. One of 16
 * digits or more is read too (inexactly, past 2^53): any such length is past every
 * limit, so it is refused 413 rather than taken for no length at all.
 */
export function declaredContentLength(headers: DeliveryHeaders): number | undefined {
  const value = headers['content-length'];
  return typeof value === 'string' && /^[0-9]+$/.test(value) ? Number(value) : undefined;
}
