import { shownValue } from '../option-keys';

const UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
const SIZE = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i;

/**
 * Turns `limit` into bytes at construction, so a typo like `'1 megabyte'` is a
 * `TypeError` at start-up instead of a surprise on the first delivery. Accepts
 * what body-parser users already write: a byte count, or `'100kb'`, `'1mb'`.
 */
export function parseSizeLimit(limit: unknown): number {
  const bytes = bytesOf(limit);
  // Under one byte, every delivery would be refused 413.
  if (bytes !== undefined && bytes >= 1) return bytes;
  throw new TypeError(`mitpo-webhooks: limit must be at least 1 byte: a number of bytes or a size such as '512kb' or '1mb' (got ${shownValue(limit)})`);
}

function bytesOf(limit: unknown): number | undefined {
  if (typeof limit === 'number') return Number.isFinite(limit) ? Math.floor(limit) : undefined;
  const match = typeof limit === 'string' ? SIZE.exec(limit) : null;
  return match ? Math.floor(Number(match[1]) * UNITS[(match[2] ?? 'b').toLowerCase()]!) : undefined;
}
