import type { MaybePromise } from '../maybe-promise';
import type { ClaimResult, ReplayStore } from './replay-store';

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

/** A replay store as the pipeline calls it: each answer now or later. */
export interface PipelineReplayStore {
  claim(key: string, inFlightTtlMs: number): MaybePromise<ClaimResult>;
  complete(key: string, retentionMs: number): MaybePromise<void>;
  release(key: string): MaybePromise<void>;
}

/** The store's synchronous face when it offers one, else the store itself. */
export function fastestFaceOf(store: ReplayStore): PipelineReplayStore {
  return (store as { [SYNC_STORE]?: SyncReplayStore })[SYNC_STORE] ?? store;
}
