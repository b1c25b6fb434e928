const UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
const SIZE = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i;

/**
 * Turns `limit` into bytes at construction, so a typo like `'1 megabyte'` is a
 * `TypeError` at start-up instead of a surprise on the first delivery. Accepts
 * what body-parser users already write: a byte count, or `'100kb'`, `'1mb'`.
 */
export function parseSizeLimit(limit: unknown): number {
  if (typeof limit === 'number') {
    if (Number.isFinite(limit) && limit >= 0) return Math.floor(limit);
  } else if (typeof limit === 'string') {
    const match = SIZE.exec(limit);
    if (match) return Math.floor(Number(match[1]) * UNITS[(match[2] ?? 'b').toLowerCase()]!);
  }
  const shown = typeof limit === 'string' ? JSON.stringify(limit.slice(0, 40)) : String(limit);
  throw new TypeError(`mitpo-webhooks: limit must be a number of bytes or a size such as '512kb' or '1mb' (got ${shown})`);
}
