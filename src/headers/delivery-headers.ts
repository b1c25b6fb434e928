/** Request headers in any shape an app may hold them: Node's, a Fetch `Headers`, or a plain object. */
export type WebhookHeaders =
  | Headers
  | Readonly<Record<string, string | readonly string[] | number | undefined>>;

/** Headers as handlers and `onFailure` see them: a plain object, names in lower case. */
export type DeliveryHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

/**
 * Any header shape as a plain object with lower-case names, so every check, and
 * every handler's `ctx.headers`, reads them the same way under every adapter.
 * Two names that differ only in case are one header sent twice, kept as an
 * array so a repeated signature stays visible (and is refused as malformed).
 * Values lose the spaces and tabs around them, which are not part of a header's
 * value (RFC 9110): Node's parser and undici drop them, workerd hands them on.
 */
export function toDeliveryHeaders(headers: unknown): DeliveryHeaders {
  const plain: Record<string, string | string[]> = {};
  if (headers === null || typeof headers !== 'object') return plain;
  const entries: Iterable<[string, unknown]> = isFetchHeaders(headers) ? headers.entries() : Object.entries(headers);
  for (const [name, raw] of entries) {
    const value = typeof raw === 'number' ? String(raw) : raw;
    let trimmed: string | string[];
    if (typeof value === 'string') trimmed = withoutSpaceAround(value);
    else if (Array.isArray(value) && value.every((item) => typeof item === 'string')) trimmed = value.map(withoutSpaceAround);
    else continue;
    const lower = name.toLowerCase();
    const existing = plain[lower];
    plain[lower] = existing === undefined ? trimmed : [existing, trimmed].flat();
  }
  return plain;
}

/**
 * The value without spaces and tabs at either end. Not a pattern: `[ \t]+$` is
 * tried from every space of a run inside the value, in time the square of the
 * run's length, and a value given to receive() is the sender's to make long.
 */
function withoutSpaceAround(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && isSpaceOrTab(value.charCodeAt(start))) start += 1;
  while (end > start && isSpaceOrTab(value.charCodeAt(end - 1))) end -= 1;
  return value.slice(start, end);
}

function isSpaceOrTab(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

function isFetchHeaders(headers: object): headers is Headers {
  return typeof (headers as Headers).get === 'function' && typeof (headers as Headers).entries === 'function';
}
