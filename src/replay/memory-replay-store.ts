import { createHash } from 'node:crypto';
import type { ClaimResult, ReplayStore } from './replay-store';
import { SYNC_STORE, type SyncReplayStore } from './sync-replay-store';

/** Options of {@link MemoryReplayStore}. */
export interface MemoryReplayStoreOptions {
  /** Most keys kept at once; the oldest go first beyond it. Default 100 000 (about 5 MB, allocated up front). */
  maxEntries?: number;
  /** The clock, in milliseconds since the epoch; for tests. Default `Date.now`. */
  now?: () => number;
}

/**
 * A replay store in this process's memory: right for one receiver process.
 * Several instances behind a load balancer need a shared store such as
 * `RedisReplayStore` from `mitpo-webhooks/redis`.
 *
 * Memory is bounded by `maxEntries` (about 50 bytes a key, allocated up front):
 * past it the oldest keys are forgotten, so size it above the deliveries you
 * receive within `maxEventAge`.
 *
 * @example
 * new MitpoWebhooks({ secret, replay: new MemoryReplayStore({ maxEntries: 50_000 }) });
 */
export class MemoryReplayStore implements ReplayStore {
  readonly maxEntries: number;
  // Keys live as 32-byte digests in typed arrays, never as JS strings or objects:
  // a store holding 100 000 keys that change on every delivery would otherwise
  // keep the garbage collector walking a large, churning heap. Slots form a ring
  // in claim order (evicting the oldest is one step); an open-addressing index
  // maps a digest to its slot.
  private readonly digests: Buffer;
  private readonly expiresAt: Float64Array;
  private readonly done: Uint8Array;
  private readonly live: Uint8Array;
  private readonly index: Int32Array;
  private readonly mask: number;
  private readonly scratch = Buffer.alloc(DIGEST_BYTES);
  private oldest = 0;
  private next = 0;
  private count = 0;
  private tombstones = 0;
  private readonly now: () => number;

  /** @throws TypeError when `maxEntries` is not a positive whole number */
  constructor(options: MemoryReplayStoreOptions = {}) {
    const maxEntries = options.maxEntries ?? 100_000;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1 || maxEntries > 2 ** 26) {
      throw new TypeError(`mitpo-webhooks: maxEntries must be a whole number from 1 to 67108864 (got ${String(maxEntries)})`);
    }
    this.maxEntries = maxEntries;
    this.digests = Buffer.alloc(maxEntries * DIGEST_BYTES);
    this.expiresAt = new Float64Array(maxEntries);
    this.done = new Uint8Array(maxEntries);
    this.live = new Uint8Array(maxEntries);
    // At most half full, so probes stay short.
    let size = 16;
    while (size < maxEntries * 2) size *= 2;
    this.index = new Int32Array(size).fill(EMPTY);
    this.mask = size - 1;
    this.now = options.now ?? Date.now;
  }

  /** How many keys are held now. */
  get size(): number {
    return this.count;
  }

  async claim(key: string, inFlightTtlMs: number): Promise<ClaimResult> {
    return this.claimNow(key, inFlightTtlMs);
  }

  async complete(key: string, retentionMs: number): Promise<void> {
    this.completeNow(key, retentionMs);
  }

  async release(key: string): Promise<void> {
    this.releaseNow(key);
  }

  /** @internal The same operations without promises, for the pipeline's fast path. */
  readonly [SYNC_STORE]: SyncReplayStore = {
    claim: (key, ttl) => this.claimNow(key, ttl),
    complete: (key, retention) => this.completeNow(key, retention),
    release: (key) => this.releaseNow(key),
  };

  private claimNow(key: string, inFlightTtlMs: number): ClaimResult {
    const now = this.now();
    const digest = this.digestOf(key);
    const found = this.find(digest);
    if (found >= 0) {
      const slot = this.index[found]!;
      if (this.expiresAt[slot]! > now) return this.done[slot] === 1 ? 'done' : 'in_flight';
      this.remove(found);
    }
    this.insert(digest, 0, now + inFlightTtlMs);
    return 'claimed';
  }

  private completeNow(key: string, retentionMs: number): void {
    const digest = this.digestOf(key);
    const found = this.find(digest);
    if (found < 0) {
      this.insert(digest, 1, this.now() + retentionMs);
      return;
    }
    const slot = this.index[found]!;
    this.done[slot] = 1;
    this.expiresAt[slot] = this.now() + retentionMs;
  }

  private releaseNow(key: string): void {
    const found = this.find(this.digestOf(key));
    if (found >= 0 && this.done[this.index[found]!] === 0) this.remove(found);
  }

  /** The key's 32 bytes in a reused buffer: a delivery key's hex as is, any other string hashed. */
  private digestOf(key: string): Buffer {
    if (key.length === DIGEST_BYTES * 2 && this.scratch.write(key, 'hex') === DIGEST_BYTES) return this.scratch;
    createHash('sha256').update(key).digest().copy(this.scratch);
    return this.scratch;
  }

  /** The index position holding this digest, or -1. */
  private find(digest: Buffer): number {
    let position = digest.readUInt32LE(0) & this.mask;
    for (;;) {
      const slot = this.index[position]!;
      if (slot === EMPTY) return -1;
      if (slot >= 0 && this.sameDigest(slot, digest)) return position;
      position = (position + 1) & this.mask;
    }
  }

  private sameDigest(slot: number, digest: Buffer): boolean {
    const offset = slot * DIGEST_BYTES;
    return this.digests.compare(digest, 0, DIGEST_BYTES, offset, offset + DIGEST_BYTES) === 0;
  }

  private insert(digest: Buffer, done: 0 | 1, expiresAt: number): void {
    if (this.next - this.oldest === this.maxEntries) this.freeOldestSlot();
    const slot = this.next % this.maxEntries;
    this.next += 1;
    this.digests.set(digest, slot * DIGEST_BYTES);
    this.done[slot] = done;
    this.expiresAt[slot] = expiresAt;
    this.live[slot] = 1;
    let position = digest.readUInt32LE(0) & this.mask;
    while (this.index[position]! >= 0) position = (position + 1) & this.mask;
    if (this.index[position] === TOMBSTONE) this.tombstones -= 1;
    this.index[position] = slot;
    this.count += 1;
  }

  private remove(position: number): void {
    this.live[this.index[position]!] = 0;
    this.index[position] = TOMBSTONE;
    this.count -= 1;
    this.tombstones += 1;
    // Tombstones lengthen probes; past a quarter of the table, rebuild it.
    if (this.tombstones > this.index.length / 4) this.rebuildIndex();
  }

  private freeOldestSlot(): void {
    const slot = this.oldest % this.maxEntries;
    this.oldest += 1;
    // A slot whose key was released or expired is already out of the index.
    if (this.live[slot] === 0) return;
    const found = this.find(this.digests.subarray(slot * DIGEST_BYTES, (slot + 1) * DIGEST_BYTES));
    if (found >= 0 && this.index[found] === slot) this.remove(found);
  }

  private rebuildIndex(): void {
    this.index.fill(EMPTY);
    this.tombstones = 0;
    for (let n = this.oldest; n < this.next; n++) {
      const slot = n % this.maxEntries;
      if (this.live[slot] === 0) continue;
      let position = this.digests.readUInt32LE(slot * DIGEST_BYTES) & this.mask;
      while (this.index[position] !== EMPTY) position = (position + 1) & this.mask;
      this.index[position] = slot;
    }
  }
}

const DIGEST_BYTES = 32;
const EMPTY = -1;
const TOMBSTONE = -2;
