const UTF8 = new TextEncoder();

/**
 * A body handed to `receive()` or `verify()` as bytes, with no runtime's own
 * type: a `Uint8Array` (Node's `Buffer` is one) as it is, a string as the UTF-8
 * it was decoded from. Anything else is not a body: `undefined`. The pipeline
 * gives the bytes the runtime's type (`Platform.bytes`) once they are read.
 */
export function bodyBytesOf(value: unknown): Uint8Array | undefined {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return UTF8.encode(value);
  return undefined;
}
