import { WebhookVerificationError } from '../errors';

/** MITPO sends `sha256=` and the 64 lowercase hex digits of an HMAC-SHA256, and its own snippet compares that whole string. */
const SIGNATURE = /^sha256=[0-9a-f]{64}$/;
const SIGNATURE_PREFIX = 'sha256=';

/**
 * Reads `X-MITPO-Signature` strictly: anything but MITPO's exact form could never
 * have matched, and refusing it here gives the integrator a precise reason
 * instead of a 401. A header sent twice arrives as an array (or joined with
 * ", "): malformed, because choosing one value would let an attacker append a guess.
 *
 * @returns the 64 hex digits of the digest the header carries
 * @throws WebhookVerificationError `missing_signature` or `malformed_signature`
 */
export function readSignatureHeader(value: unknown): string {
  if (typeof value === 'string' && SIGNATURE.test(value)) return value.slice(SIGNATURE_PREFIX.length);
  if (value === undefined || value === null || (typeof value === 'string' && value.trim() === '')) {
    throw new WebhookVerificationError('missing_signature', 'The X-MITPO-Signature header is missing');
  }
  throw new WebhookVerificationError('malformed_signature', describeMalformed(value));
}

function describeMalformed(value: unknown): string {
  if (Array.isArray(value) || (typeof value === 'string' && value.includes(','))) {
    return 'X-MITPO-Signature was sent more than once';
  }
  if (typeof value !== 'string') return 'X-MITPO-Signature is not text';
  if (!value.startsWith('sha256=')) return 'X-MITPO-Signature must start with "sha256=" followed by 64 lowercase hex digits';
  const hex = value.slice('sha256='.length);
  if (/^[0-9a-fA-F]{64}$/.test(hex)) return 'X-MITPO-Signature must use lowercase hex digits';
  return `X-MITPO-Signature must be "sha256=" followed by exactly 64 hex digits (got ${Math.min(hex.length, 9999)} characters after the prefix)`;
}
