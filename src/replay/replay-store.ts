/** The outcome of claiming a delivery key. */
export type ClaimResult = 'claimed' | 'in_flight' | 'done';

/**
 * Where delivery keys are remembered, so a delivery is handled once however often
 * it arrives. A delivery is claimed before its handlers run, completed when they
 * all succeed, and released when one fails so MITPO's retry runs them again.
 * Implementations must make `claim` atomic: two concurrent claims of one key
 * must not both get `'claimed'`.
 */
export interface ReplayStore {
  /**
   * Claims `key` unless it is already held.
   * @param key - the delivery key (SHA-256 of the raw body, hex)
   * @param inFlightTtlMs - how long the claim lasts if it is never completed or released (a crashed process)
   * @returns `'claimed'` for the caller to handle it, `'in_flight'` while another claim holds it, `'done'` once completed
   */
  claim(key: string, inFlightTtlMs: number): Promise<ClaimResult>;
  /** Marks `key` handled and keeps it for `retentionMs`. */
  complete(key: string, retentionMs: number): Promise<void>;
  /** Drops an in-flight claim so the delivery can be handled again; a completed key stays. */
  release(key: string): Promise<void>;
}

export function isReplayStore(value: unknown): value is ReplayStore {
  const store = value as Partial<ReplayStore> | null;
  return (
    typeof store === 'object' &&
    store !== null &&
    typeof store.claim === 'function' &&
    typeof store.complete === 'function' &&
    typeof store.release === 'function'
  );
}
