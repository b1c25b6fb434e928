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
