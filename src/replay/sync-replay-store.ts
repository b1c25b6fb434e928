import type { ClaimResult } from './replay-store';

/**
 * A store that can answer at once offers these beside its async methods, so the
 * pipeline skips the promise round trips. Internal: the public contract stays
 * `ReplayStore`.
 */
export const SYNC_STORE = Symbol('mitpo-webhooks.syncReplayStore');

export interface SyncReplayStore {
  claim(key: string, inFlightTtlMs: number): ClaimResult;
  complete(key: string, retentionMs: number): void;
  release(key: string): void;
}

export function syncStoreOf(store: object): SyncReplayStore | undefined {
  return (store as { [SYNC_STORE]?: SyncReplayStore })[SYNC_STORE];
}
