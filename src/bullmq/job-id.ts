import { sha256HexOf } from '../platform/node-platform';

/**
 * The queue job id of a delivery. BullMQ refuses ids with ":" or of digits only,
 * and a custom `deliveryKey` may be anything; a hex SHA-256 of the key is neither,
 * and the same key always gives the same job, which is what de-duplicates.
 */
export function jobIdOf(deliveryKey: string): string {
  return sha256HexOf(deliveryKey);
}
