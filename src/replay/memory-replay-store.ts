import { createHash } from 'node:crypto';
import type { ClaimResult, ReplayStore } from './replay-store';
import { SYNC_STORE, type SyncReplayStore } from './sync-replay-store';

/** Options of {@link MemoryReplayStore}. */
export interface MemoryReplayStoreOptions {
  /** Most keys kept at once; the oldest go first beyond it. Default 100 000 (about 6 MB, allocated up front). */
  maxEntries?: number;
  /** The clock, in milliseconds since the epoch; for tests. Default `Date.now`. */
  now?: () => number;
}

/**
 * A replay store in this process's memory: right for one receiver process.
 * Several instances behind a load balancer need a shared store such as
 * `RedisReplayStore` from `mitpo-webhooks/redis`.
 *
 * Memory is bounded by `maxEntries` (about 56 bytes a key, allocated up front):
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
  // maps a digest to its slot. The arrays are megabytes, so every random access
  // is a cache miss, and what decides the cost is how few there are: an index
  // entry carries a few bits of its digest beside the slot, so a probe passing
  // other keys rarely reads their digests, and each slot remembers its index
  // position, so evicting it is one write instead of a lookup.
  private readonly words: Int32Array;
  private readonly positionOf: Int32Array;
  private readonly expiresAt: Float64Array;
  private readonly done: Uint8Array;
  private readonly live: Uint8Array;
  private readonly index: Int32Array;
  private readonly mask: number;
  // A key's digest is decoded into these two views of the same 32 bytes: the
  // Buffer takes the hex, the words are what lookups compare, in plain JS
  // (a native Buffer.compare per probe cost more than the lookup itself).
  private readonly probe = new Int32Array(WORDS);
  private readonly probeBytes = Buffer.from(this.probe.buffer);
  // complete() almost always follows the claim() of the same key; remembering
  // that claim's place in the ring spares a lookup. The ring reuses its slot only
  // maxEntries inserts later, so the place still holds the claim until then.
  private lastClaimKey: string | undefined;
  private lastClaimNumber = 0;
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
    this.words = new Int32Array(maxEntries * WORDS);
    this.positionOf = new Int32Array(maxEntries);
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
    this.decode(key);
    const found = this.find();
    if (found >= 0) {
      const slot = this.index[found]! & SLOT_BITS;
      if (this.expiresAt[slot]! > now) return this.done[slot] === 1 ? 'done' : 'in_flight';
      this.remove(found);
    }
    this.lastClaimKey = key;
    this.lastClaimNumber = this.next;
    this.insert(0, now + inFlightTtlMs);
    return 'claimed';
  }

  private completeNow(key: string, retentionMs: number): void {
    const slot = this.liveSlotOf(key);
    if (slot < 0) {
      this.insert(1, this.now() + retentionMs);
      return;
    }
    this.done[slot] = 1;
    this.expiresAt[slot] = this.now() + retentionMs;
  }

  private releaseNow(key: string): void {
    const slot = this.liveSlotOf(key);
    if (slot >= 0 && this.done[slot] === 0) this.remove(this.positionOf[slot]!);
  }

  /** The live slot holding this key, or -1 (with the key then decoded into `probe`, for an insert). */
  private liveSlotOf(key: string): number {
    const slot = this.lastClaimNumber % this.maxEntries;
    if (key === this.lastClaimKey && this.next - this.lastClaimNumber <= this.maxEntries && this.live[slot] === 1) {
      this.lastClaimKey = undefined;
      return slot;
    }
    this.decode(key);
    const found = this.find();
    return found < 0 ? -1 : this.index[found]! & SLOT_BITS;
  }

  /** The key's 32 bytes into `probe`: a delivery key's hex as is, any other string hashed. */
  private decode(key: string): void {
    if (key.length === DIGEST_BYTES * 2 && this.probeBytes.write(key, 'hex') === DIGEST_BYTES) return;
    createHash('sha256').update(key).digest().copy(this.probeBytes);
  }

  /** The index position holding the digest in `probe`, or -1. */
  private find(): number {
    const { words, probe } = this;
    const tag = tagOf(probe[1]!);
    let position = probe[0]! & this.mask;
    for (;;) {
      const entry = this.index[position]!;
      if (entry === EMPTY) return -1;
      if (entry >= 0 && (entry & TAG_BITS) === tag) {
        const at = (entry & SLOT_BITS) * WORDS;
        if (
          words[at] === probe[0] &&
          words[at + 1] === probe[1] &&
          words[at + 2] === probe[2] &&
          words[at + 3] === probe[3] &&
          words[at + 4] === probe[4] &&
          words[at + 5] === probe[5] &&
          words[at + 6] === probe[6] &&
          words[at + 7] === probe[7]
        ) {
          return position;
        }
      }
      position = (position + 1) & this.mask;
    }
  }

  /** Stores the digest in `probe` in the next slot of the ring. */
  private insert(done: 0 | 1, expiresAt: number): void {
    if (this.next - this.oldest === this.maxEntries) this.freeOldestSlot();
    const slot = this.next % this.maxEntries;
    this.next += 1;
    this.words.set(this.probe, slot * WORDS);
    this.done[slot] = done;
    this.expiresAt[slot] = expiresAt;
    this.live[slot] = 1;
    this.place(slot, this.probe[0]!, this.probe[1]!);
    this.count += 1;
  }

  /** Puts a slot in the first free index position for its digest (whose first two words are given). */
  private place(slot: number, word0: number, word1: number): void {
    let position = word0 & this.mask;
    while (this.index[position]! >= 0) position = (position + 1) & this.mask;
    if (this.index[position] === TOMBSTONE) this.tombstones -= 1;
    this.index[position] = tagOf(word1) | slot;
    this.positionOf[slot] = position;
  }

  private remove(position: number): void {
    this.live[this.index[position]! & SLOT_BITS] = 0;
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
    if (this.live[slot] === 1) this.remove(this.positionOf[slot]!);
  }

  private rebuildIndex(): void {
    this.index.fill(EMPTY);
    this.tombstones = 0;
    for (let n = this.oldest; n < this.next; n++) {
      const slot = n % this.maxEntries;
      if (this.live[slot] === 1) this.place(slot, this.words[slot * WORDS]!, this.words[slot * WORDS + 1]!);
    }
  }
}

/**
 * An index entry is the slot (up to 2^26) with five bits of the digest above it,
 * so most probes past other keys are settled without reading their digests.
 * Entries stay non-negative; EMPTY and TOMBSTONE are negative.
 */
const SLOT_BITS = (1 << 26) - 1;
const TAG_BITS = 0x1f << 26;

function tagOf(word: number): number {
  return word & TAG_BITS;
}

const DIGEST_BYTES = 32;
const WORDS = DIGEST_BYTES / 4;
const EMPTY = -1;
const TOMBSTONE = -2;
