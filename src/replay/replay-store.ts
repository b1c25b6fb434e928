import type { EventOrder } from '../ordering/event-order';

/** The outcome of claiming a delivery key. */
export type ClaimResult = 'claimed' | 'in_flight' | 'done';

/**
 * The outcome of claiming a delivery key and its resource's turn together
 * (`ordering`): also `'resource_in_flight'` while another event of the resource
 * is being handled, or `{ stale }` with the applied position that makes this event stale.
 */
export type OrderedClaimResult = ClaimResult | 'resource_in_flight' | { stale: number };

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

  /**
   * With `ordering` (required then; `MemoryReplayStore` and `RedisReplayStore` have it),
   * in one atomic step: `'done'` or `'in_flight'` as `claim` answers; else `{ stale }`
   * when a position above `order.position` was applied to `order.resource`; else
   * `'resource_in_flight'` while another claim holds the resource; else claims both
   * the key and the resource under `token` for `inFlightTtlMs`.
   */
  claimInOrder?(key: string, order: EventOrder, inFlightTtlMs: number, token: string): Promise<OrderedClaimResult>;
  /**
   * Atomically: completes the key as `complete` does, records `order.position` as the
   * resource's applied position (unless a higher one is recorded) for `orderRetentionMs`,
   * and frees the resource.
   */
  completeInOrder?(key: string, order: EventOrder, retentionMs: number, orderRetentionMs: number, token: string): Promise<void>;
  /** Releases the key as `release` does, and frees the resource if `token` holds it. */
  releaseInOrder?(key: string, order: EventOrder, token: string): Promise<void>;
  /** Renews the key's claim and the resource's hold together. @returns false when the claim is no longer held */
  renewInOrder?(key: string, order: EventOrder, inFlightTtlMs: number, token: string): Promise<boolean>;
}

/** Whether a store keeps ordering (`claimInOrder` and the rest). */
export function keepsOrder(store: ReplayStore): store is ReplayStore & Required<Pick<ReplayStore, 'claimInOrder' | 'completeInOrder' | 'releaseInOrder' | 'renewInOrder'>> {
  return (
    typeof store.claimInOrder === 'function' &&
    typeof store.completeInOrder === 'function' &&
    typeof store.releaseInOrder === 'function' &&
    typeof store.renewInOrder === 'function'
  );
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
