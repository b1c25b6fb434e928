import { createHash } from 'node:crypto';

/** The default replay key of a delivery: the hex SHA-256 of its raw body. Identical bytes, identical key. */
export function deliveryKeyOf(rawBody: Uint8Array): string {
  return createHash('sha256').update(rawBody).digest('hex');
}
