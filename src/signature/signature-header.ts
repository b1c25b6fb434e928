/** MITPO sends `sha256=` followed by the 64 lowercase hex digits of an HMAC-SHA256. */
const PREFIX = 'sha256=';
const SIGNATURE_LENGTH = PREFIX.length + 64;
const UPPERCASE_HEX = /[A-F]/;

/** What a `X-MITPO-Signature` value turned out to be. */
export type SignatureHeader =
  | { kind: 'missing' }
  | { kind: 'malformed'; reason: string }
  | { kind: 'valid'; digest: Buffer };

/**
 * Reads `X-MITPO-Signature` strictly. MITPO's own snippet compares the whole
 * string, so anything but the exact lowercase form could never have matched;
 * refusing it here gives the integrator a precise reason instead of a 401.
 * A header sent twice arrives as an array (or joined with ", "): both malformed,
 * because choosing one of them would let an attacker append a guess.
 */
export function readSignatureHeader(value: unknown): SignatureHeader {
  if (value === undefined || value === null) return { kind: 'missing' };
  if (Array.isArray(value)) {
    return { kind: 'malformed', reason: 'X-MITPO-Signature was sent more than once' };
  }
  if (typeof value !== 'string') return { kind: 'malformed', reason: 'X-MITPO-Signature is not text' };
  if (value.length === SIGNATURE_LENGTH && value.startsWith(PREFIX)) {
    // Decoding stops at the first non-hex character, so 32 bytes means 64 hex
    // digits, and no uppercase one makes them MITPO's. Half the cost of one regex.
    const digest = Buffer.allocUnsafe(32);
    if (digest.write(value.slice(PREFIX.length), 'hex') === 32 && !UPPERCASE_HEX.test(value)) return { kind: 'valid', digest };
  }
  if (value.trim() === '') return { kind: 'missing' };
  return { kind: 'malformed', reason: describeMalformedSignature(value) };
}

function describeMalformedSignature(value: string): string {
  if (value.includes(',')) return 'X-MITPO-Signature holds more than one value (the header was sent twice)';
  if (!value.startsWith('sha256=')) {
    return 'X-MITPO-Signature must start with "sha256=" followed by 64 lowercase hex digits';
  }
  const hex = value.slice(7);
  if (/^[0-9a-fA-F]{64}$/.test(hex)) return 'X-MITPO-Signature must use lowercase hex digits';
  return `X-MITPO-Signature must be "sha256=" followed by exactly 64 hex digits (got ${Math.min(hex.length, 9999)} characters after the prefix)`;
}
