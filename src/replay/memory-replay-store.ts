import type { EventOrder } from '../ordering/event-order';
import type { ClaimResult, OrderedClaimResult, ReplayStore } from './replay-store';

/** Options of {@link MemoryReplayStore}. */
export interface MemoryReplayStoreOptions {
  /**
   * Most keys held at once; past it the oldest settled key goes first. A key whose
   * delivery is still being handled is never forgotten, so the store holds more
   * only when more deliveries were handled at once than it had room for.
   * Default 100 000 (about 20 MB when full).
   */
  maxEntries?: number;
  /** The clock, in milliseconds since the epoch; for tests. Default `Date.now`. */
  now?: () => number;
}

interface Entry {
  done: boolean;
  expiresAt: number;
  /** The claim's owner; a completed key has none. */
  token: string | undefined;
}

/** How many keys, or resources, one eviction looks at before it gives up and lets the map grow by one. */
const EVICTION_LOOKS = 32;

/** A resource's applied position and who holds its turn now (`ordering`). */
interface Resource {
  applied: number | undefined;
  appliedUntil: number;
  holder: string | undefined;
  heldUntil: number;
}

/**
 * A replay store in this process's memory: right for one receiver process.
 * Several instances behind a load balancer need a shared store such as
 * `RedisReplayStore` from `mitpo-webhooks/redis`.
 *
 * Holds `maxEntries` keys; past it the oldest settled one is forgotten, so size
 * it above the deliveries you receive within `maxEventAge`. A delivery whose
 * handlers are still running keeps its key, so MITPO's retry meanwhile is 409
 * `in_flight`, never a second run. A released key frees its place at once, so no
 * stream of failing or repeated deliveries can push a handled delivery out
 * early. Memory grows with use.
 *
 * @example
 * new MitpoWebhooks({ secret, replay: new MemoryReplayStore({ maxEntries: 50_000 }) });
 */
export class MemoryReplayStore implements ReplayStore {
  readonly maxEntries: number;
  /** In order of claim: a Map keeps insertion order, so its first entry is the oldest. */
  private readonly entries = new Map<string, Entry>();
  /**
   * Eviction walks the Map from its oldest entry. A fresh iterator per eviction
   * would start at the table's first slot and step over every entry deleted
   * since V8 last compacted it (measured: quadratic under release-heavy
   * traffic), so one iterator lives on; V8 keeps it valid across deletes and
   * rehashes, and everything before it has already been evicted.
   */
  private oldest: Iterator<string> | undefined;
  private readonly now: () => number;
  /** For `ordering`; bounded by `maxEntries` too, the oldest resource forgotten first. */
  private readonly resources = new Map<string, Resource>();

  /** @throws TypeError when `maxEntries` is not a whole number from 1 to 16 777 216 */
  constructor(options: MemoryReplayStoreOptions = {}) {
    const maxEntries = options.maxEntries ?? 100_000;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1 || maxEntries > 2 ** 24) {
      throw new TypeError(`mitpo-webhooks: maxEntries must be a whole number from 1 to 16777216 (got ${String(maxEntries)})`);
    }
    this.maxEntries = maxEntries;
    this.now = options.now ?? Date.now;
  }

  /** How many keys are held now (expired ones included until they are looked up or evicted). */
  get size(): number {
    return this.entries.size;
  }

  async claim(key: string, inFlightTtlMs: number, token?: string): Promise<ClaimResult> {
    const now = this.now();
    const entry = this.entries.get(key);
    if (entry !== undefined) {
      if (entry.expiresAt > now) return entry.done ? 'done' : 'in_flight';
      this.entries.delete(key);
    }
    if (this.entries.size >= this.maxEntries) this.evictOldest(now);
    this.entries.set(key, { done: false, expiresAt: now + inFlightTtlMs, token });
    return 'claimed';
  }

  async complete(key: string, retentionMs: number): Promise<void> {
    const entry = this.entries.get(key);
    const now = this.now();
    const expiresAt = now + retentionMs;
    if (entry !== undefined) {
      entry.done = true;
      entry.expiresAt = expiresAt;
      entry.token = undefined;
      return;
    }
    // The claim lapsed or was evicted meanwhile: the handlers did succeed, so the key is kept all the same.
    if (this.entries.size >= this.maxEntries) this.evictOldest(now);
    this.entries.set(key, { done: true, expiresAt, token: undefined });
  }

  async release(key: string, token?: string): Promise<void> {
    const entry = this.entries.get(key);
    if (entry === undefined || entry.done) return;
    if (token !== undefined && entry.token !== token) return;
    this.entries.delete(key);
  }

  async renew(key: string, inFlightTtlMs: number, token: string): Promise<boolean> {
    const entry = this.entries.get(key);
    if (entry === undefined || entry.done || entry.token !== token) return false;
    entry.expiresAt = this.now() + inFlightTtlMs;
    return true;
  }

  async claimInOrder(key: string, order: EventOrder, inFlightTtlMs: number, token: string): Promise<OrderedClaimResult> {
    const now = this.now();
    const entry = this.entries.get(key);
    if (entry !== undefined && entry.expiresAt > now) return entry.done ? 'done' : 'in_flight';
    const resource = this.resource(order.resource, now);
    if (resource.applied !== undefined && resource.applied > order.position) return { stale: resource.applied };
    if (resource.holder !== undefined && resource.holder !== token) return 'resource_in_flight';
    resource.holder = token;
    resource.heldUntil = now + inFlightTtlMs;
    return this.claim(key, inFlightTtlMs, token);
  }

  async completeInOrder(key: string, order: EventOrder, retentionMs: number, orderRetentionMs: number, token: string): Promise<void> {
    const now = this.now();
    const resource = this.resource(order.resource, now);
    if (resource.applied === undefined || resource.applied < order.position) {
      resource.applied = order.position;
      resource.appliedUntil = now + orderRetentionMs;
    }
    if (resource.holder === token) resource.holder = undefined;
    await this.complete(key, retentionMs);
  }

  async releaseInOrder(key: string, order: EventOrder, token: string): Promise<void> {
    const resource = this.resources.get(order.resource);
    if (resource?.holder === token) resource.holder = undefined;
    await this.release(key, token);
  }

  async renewInOrder(key: string, order: EventOrder, inFlightTtlMs: number, token: string): Promise<boolean> {
    const resource = this.resources.get(order.resource);
    if (resource?.holder === token) resource.heldUntil = this.now() + inFlightTtlMs;
    return this.renew(key, inFlightTtlMs, token);
  }

  /** The resource's record, with what has lapsed forgotten. */
  private resource(name: string, now: number): Resource {
    let resource = this.resources.get(name);
    if (resource === undefined) {
      if (this.resources.size >= this.maxEntries) this.evictResource(now);
      resource = { applied: undefined, appliedUntil: 0, holder: undefined, heldUntil: 0 };
      this.resources.set(name, resource);
    }
    if (resource.applied !== undefined && resource.appliedUntil <= now) resource.applied = undefined;
    if (resource.holder !== undefined && resource.heldUntil <= now) resource.holder = undefined;
    return resource;
  }

  /**
   * Forgets the oldest resource no claim holds: a held one stays, or a second
   * event of it could run alongside. Looks at a few only; if all are held, the
   * map grows by one (it shrinks again as they are evicted later).
   */
  private evictResource(now: number): void {
    let looked = 0;
    for (const [name, resource] of this.resources) {
      if (resource.holder === undefined || resource.heldUntil <= now) {
        this.resources.delete(name);
        return;
      }
      if ((looked += 1) >= EVICTION_LOOKS) return;
    }
  }

  /**
   * Forgets the oldest key no live claim holds. A claim still in flight is moved
   * to the newest end instead: forgetting it would let MITPO's retry of a delivery
   * whose handlers are still running claim it again and run them a second time.
   * Looks at a few only; if all are in flight, the map grows by one. Only
   * deliveries being handled right now are kept past `maxEntries` this way, and a
   * lapsed claim (its process died) goes like a settled one.
   */
  private evictOldest(now: number): void {
    for (let looked = 0; looked < EVICTION_LOOKS && looked < this.entries.size; looked += 1) {
      let next = this.oldest?.next();
      if (next === undefined || next.done === true) {
        this.oldest = this.entries.keys();
        next = this.oldest.next();
      }
      if (next.done === true) return;
      const entry = this.entries.get(next.value)!;
      this.entries.delete(next.value);
      if (entry.done || entry.expiresAt <= now) return;
      this.entries.set(next.value, entry);
    }
  }
}
