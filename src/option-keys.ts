/**
 * Throws on anything but an object, and on a key outside `known`: a misspelt
 * option (`atempts: 3`) would otherwise be ignored in silence and its default
 * used. `shown` is what the message lists, when some known keys are not the
 * caller's to give. Returns the object.
 */
export function checkOptionKeys(options: unknown, where: string, known: readonly string[], shown = known): Record<string, unknown> {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`mitpo-webhooks: ${where} takes an options object (known options: ${shown.join(', ')})`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TypeError(`mitpo-webhooks: unknown ${where} option "${key}"; known options are ${shown.join(', ')}`);
    }
  }
  return options as Record<string, unknown>;
}

/** A number, size or duration as people write one: `'300'`, `'5m'`, `'1 megabyte'`, `'0.5 kb'`. */
const READS_AS_AMOUNT =
  /^\s{0,4}[+-]?\d{1,10}(?:[.,_]\d{1,10})?\s{0,4}(?:ms|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?|b|bytes?|kb|mb|gb|kilobytes?|megabytes?|gigabytes?)?\s{0,4}$/i;

/**
 * What a message about an option's value may say of the value. A number, a
 * boolean or a string that reads as an amount is shown, since seeing `"300"` is
 * the fix; any other string only by its length, and an object by its kind: the
 * value may be a secret put in the wrong option, and a start-up error reaches
 * the logs.
 */
export function shownValue(value: unknown): string {
  if (typeof value === 'string') return READS_AS_AMOUNT.test(value) ? JSON.stringify(value) : `a string of ${value.length} characters`;
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object' && value !== null) return 'an object';
  return typeof value === 'function' ? 'a function' : String(value);
}
