import type { IncomingHttpHeaders } from 'node:http';

/** Request headers in any of the shapes apps have them: Node's, a Fetch `Headers`, or a plain object. */
export type WebhookHeaders =
  | IncomingHttpHeaders
  | Headers
  | Readonly<Record<string, string | readonly string[] | number | undefined>>;

/**
 * The value of one header, looked up without regard to case. Arrays are kept: a
 * repeated header must stay visible. `lowerCaseKeys` says the object is Node's own,
 * whose names are already lower case, which spares a scan for every absent header.
 */
export function getHeader(
  headers: WebhookHeaders,
  lowerName: string,
  lowerCaseKeys = false,
): string | readonly string[] | undefined {
  if (headers === null || typeof headers !== 'object') return undefined;
  if (typeof (headers as Headers).get === 'function' && typeof (headers as Headers).has === 'function') {
    return (headers as Headers).get(lowerName) ?? undefined;
  }
  const record = headers as Record<string, unknown>;
  // Node lower-cases names, so the direct hit is the common case; the scan is for hand-written objects.
  let value: unknown = Object.prototype.hasOwnProperty.call(record, lowerName) ? record[lowerName] : undefined;
  if (value === undefined && !lowerCaseKeys) {
    for (const key of Object.keys(record)) {
      if (key.length === lowerName.length && key.toLowerCase() === lowerName) {
        value = record[key];
        break;
      }
    }
  }
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string' || Array.isArray(value)) return value as string | readonly string[];
  return undefined;
}
