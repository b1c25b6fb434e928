import { WebhookVerificationError } from '../errors';
import { readSignatureHeader } from '../signature/signature-header';
import { getHeader, type WebhookHeaders } from './header-source';

/** What the headers say about a delivery, once they passed every check that needs no body. */
export interface CheckedHeaders {
  digest: Buffer;
  sentAtSeconds: number;
  eventHeader: string | undefined;
  contentLength: number | undefined;
}

const JSON_MEDIA_TYPE = /^application\/(?:[\w.+-]+\+)?json$/;
const UNIX_SECONDS = /^[0-9]{1,12}$/;

/**
 * The checks that need only the headers, in the contract's order, so a forged or
 * stale delivery is refused before a byte of its body is read.
 *
 * @throws WebhookVerificationError for the first check that fails
 */
export function checkHeaders(
  headers: WebhookHeaders,
  nowMs: number,
  toleranceSeconds: number,
  lowerCaseKeys = false,
): CheckedHeaders {
  const header = (name: string) => getHeader(headers, name, lowerCaseKeys);
  checkContentType(header('content-type'), header('content-encoding'));

  const signature = readSignatureHeader(header('x-mitpo-signature'));
  if (signature.kind === 'missing') {
    throw new WebhookVerificationError('missing_signature', 'The X-MITPO-Signature header is missing');
  }
  if (signature.kind === 'malformed') throw new WebhookVerificationError('malformed_signature', signature.reason);

  const sentAtSeconds = readTimestamp(header('x-mitpo-timestamp'));
  // The header has whole-second granularity, so the clock is read the same way;
  // rounding instead would let a header 300.6 s off pass a 300 s tolerance.
  const skew = Math.floor(nowMs / 1000) - sentAtSeconds;
  if (Math.abs(skew) > toleranceSeconds) {
    const direction = skew > 0 ? `${skew} s in the past` : `${-skew} s in the future`;
    throw new WebhookVerificationError(
      'timestamp_out_of_tolerance',
      `X-MITPO-Timestamp is ${direction}, outside the tolerance of ${toleranceSeconds} s; if deliveries are fresh, check this server's clock`,
    );
  }

  const event = header('x-mitpo-event');
  return {
    digest: signature.digest,
    sentAtSeconds,
    eventHeader: typeof event === 'string' ? event : event === undefined ? undefined : event.join(', '),
    contentLength: readContentLength(header('content-length')),
  };
}

function checkContentType(contentType: unknown, contentEncoding: unknown): void {
  // What MITPO sends, accepted without parsing it.
  if (contentType !== undefined && contentType !== 'application/json') {
    const text = Array.isArray(contentType) ? contentType.join(',') : String(contentType);
    const mediaType = text.split(';', 1)[0]!.trim().toLowerCase();
    if (!JSON_MEDIA_TYPE.test(mediaType)) {
      throw new WebhookVerificationError(
        'unsupported_media_type',
        `Content-Type must be application/json (got "${mediaType.slice(0, 100)}")`,
      );
    }
  }
  if (contentEncoding !== undefined) {
    const encoding = (Array.isArray(contentEncoding) ? contentEncoding.join(',') : String(contentEncoding))
      .trim()
      .toLowerCase();
    // The HMAC is over the bytes MITPO sent; a compressed body would need inflating
    // first, which is a decompression-bomb surface MITPO itself never uses.
    if (encoding !== '' && encoding !== 'identity') {
      throw new WebhookVerificationError(
        'unsupported_media_type',
        `Content-Encoding "${encoding.slice(0, 100)}" is not supported; send the body uncompressed`,
      );
    }
  }
}

function readTimestamp(value: string | readonly string[] | undefined): number {
  if (typeof value === 'string' && UNIX_SECONDS.test(value)) return Number(value);
  if (value === undefined || (typeof value === 'string' && value.trim() === '')) {
    throw new WebhookVerificationError('missing_timestamp', 'The X-MITPO-Timestamp header is missing');
  }
  const text = typeof value === 'string' ? value : '';
  const hint = /^[0-9]{13}$/.test(text)
    ? ' (this looks like milliseconds; MITPO sends seconds)'
    : typeof value === 'string'
      ? ''
      : ' (the header was sent more than once)';
  throw new WebhookVerificationError('malformed_timestamp', `X-MITPO-Timestamp must be whole unix seconds, e.g. 1774175400${hint}`);
}

function readContentLength(value: string | readonly string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !/^[0-9]+$/.test(value)) return undefined;
  return Number(value);
}
