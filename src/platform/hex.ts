/**
 * Hex text and bytes, for the Web runtimes that have no `Buffer`: digests are
 * shown as lowercase hex, and a signature header's hex is turned back into the
 * bytes `crypto.subtle.verify` compares.
 */
const DIGITS = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let hex = '';
  for (const byte of view) hex += DIGITS[byte]!;
  return hex;
}

/** @param hex - an even number of hex digits, already checked (the signature header's form) */
export function fromHex(hex: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}
