import type { ClaimResult, ReplayStore } from './replay-store';

/** Options of {@link MemoryReplayStore}. */
export interface MemoryReplayStoreOptions {
  /** Most keys kept at once; the oldest go first beyond it. Default 100 000 (roughly 20 MB at most). */
  maxEntries?: number;
  /** The clock, in milliseconds since the epoch; for tests. Default `Date.now`. */
  now?: () => number;
}

interface Entry {
  done: boolean;
  expiresAt: number;
}

/**
 * A replay store in this process's memory: right for one receiver process.
 * Several instances behind a load balancer need a shared store such as
 * `RedisReplayStore` from `mitpo-webhooks/redis`.
 *
 * Memory is bounded by `maxEntries`: past it the oldest keys are forgotten, so
 * size it above the deliveries you receive within `maxEventAge`.
 *
 * @example
 * new MitpoWebhooks({ secret, replay: new MemoryReplayStore({ maxEntries: 50_000 }) });
 */
export class MemoryReplayStore implements ReplayStore {
  readonly maxEntries: number;
  // A Map iterates in insertion order, which makes "oldest out first" a matter of
  // deleting from the front.
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;

  /** @throws TypeError when `maxEntries` is not a positive whole number */
  constructor(options: MemoryReplayStoreOptions = {}) {
    const maxEntries = options.maxEntries ?? 100_000;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
      throw new TypeError(`mitpo-webhooks: maxEntries must be a positive whole number (got ${String(maxEntries)})`);
    }
    this.maxEntries = maxEntries;
    this.now = options.now ?? Date.now;
  }

  /** How many keys are held now. */
  get size(): number {
    return this.entries.size;
  }

  async claim(key: string, inFlightTtlMs: number): Promise<ClaimResult> {
    const now = this.now();
    const existing = this.entries.get(key);
    if (existing !== undefined) {
      if (existing.expiresAt > now) return existing.done ? 'done' : 'in_flight';
      this.entries.delete(key);
    }
    this.entries.set(key, { done: false, expiresAt: now + inFlightTtlMs });
    this.evict(now);
    return 'claimed';
  }

  async complete(key: string, retentionMs: number): Promise<void> {
    // Re-inserting moves the key to the back, so it is kept for its whole retention.
    this.entries.delete(key);
    this.entries.set(key, { done: true, expiresAt: this.now() + retentionMs });
    this.evict(this.now());
  }

  async release(key: string): Promise<void> {
    const entry = this.entries.get(key);
    if (entry !== undefined && !entry.done) this.entries.delete(key);
  }

  private evict(now: number): void {
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.maxEntries && entry.expiresAt > now) break;
      this.entries.delete(key);
    }
  }
}
