/** The outcome of claiming a delivery key. */
export type ClaimResult = 'claimed' | 'in_flight' | 'done';

/**
 * Where delivery keys are remembered, so a delivery is handled once however often
 * it arrives. A delivery is claimed before its handlers run, completed when they
 * all succeed, and released when one fails so MITPO's retry runs them again.
 * `claim` must be atomic: two concurrent claims of one key never both get `'claimed'`.
 *
 * Durations are milliseconds, as Redis' `PX` takes them.
 *
 * The `token` arguments and `renew` are optional: a store that honours them
 * guarantees that a claim whose handlers still run never lapses (the pipeline
 * renews it), and that a late `release` from one attempt never removes another
 * attempt's claim. A custom store with only the three methods still works; it
 * then relies on `inFlightTtl` outlasting the slowest handler.
 */
export interface ReplayStore {
  /**
   * Claims `key` unless it is already held.
   * @param key - the delivery key (by default the hex SHA-256 of the raw body)
   * @param inFlightTtlMs - how long the claim lasts if it is never completed, released or renewed (a crashed process)
   * @param token - identifies this attempt's claim, for `renew`, `complete` and `release`
   * @returns `'claimed'` for the caller to handle it, `'in_flight'` while another claim holds it, `'done'` once completed
   */
  claim(key: string, inFlightTtlMs: number, token?: string): Promise<ClaimResult>;
  /** Marks `key` handled and keeps it for `retentionMs`. */
  complete(key: string, retentionMs: number, token?: string): Promise<void>;
  /** Drops the in-flight claim (only the one `token` took, when given) so the delivery can be handled again; a completed key stays. */
  release(key: string, token?: string): Promise<void>;
  /**
   * Extends the in-flight claim `token` took by `inFlightTtlMs` from now.
   * @returns false when that claim is no longer held
   */
  renew?(key: string, inFlightTtlMs: number, token: string): Promise<boolean>;
}

export function isReplayStore(value: unknown): value is ReplayStore {
  const store = value as Partial<ReplayStore> | null;
  return (
    typeof store === 'object' &&
    store !== null &&
    typeof store.claim === 'function' &&
    typeof store.complete === 'function' &&
    typeof store.release === 'function' &&
    (store.renew === undefined || typeof store.renew === 'function')
  );
}
