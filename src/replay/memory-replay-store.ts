import type { EventOrder } from '../ordering/event-order';
import type { ClaimResult, OrderedClaimResult, ReplayStore } from './replay-store';

/** Options of {@link MemoryReplayStore}. */
export interface MemoryReplayStoreOptions {
  /**
   * Most handled keys kept at once; past it the oldest goes first. Keys whose
   * deliveries are being handled are kept besides, never forgotten to make room.
   * Default 100 000 (about 14 MB when full).
   */
  maxEntries?: number;
  /** The clock, in milliseconds since the epoch; for tests. Default `Date.now`. */
  now?: () => number;
}

/** A claim not yet completed or released: a delivery being handled. */
interface HeldClaim {
  expiresAt: number;
  /** The claim's owner. */
  token: string | undefined;
}

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
 * Keeps at most `maxEntries` handled keys, the oldest forgotten first, so size
 * it above the deliveries you receive within `maxEventAge`. A delivery whose
 * handlers are still running keeps its claim however many others arrive, so
 * MITPO's retry meanwhile is 409 `in_flight`, never a second run. A released
 * key frees its place at once, so no stream of failing or repeated deliveries
 * can push a handled delivery out early. Memory grows with use.
 *
 * @example
 * new MitpoWebhooks({ secret, replay: new MemoryReplayStore({ maxEntries: 50_000 }) });
 */
export class MemoryReplayStore implements ReplayStore {
  readonly maxEntries: number;
  /**
   * Handled keys and until when each answers `done`, in the order they were
   * completed: a Map keeps insertion order, so its first entry is the oldest,
   * the one forgotten when there is no room.
   */
  private readonly handled = new Map<string, number>();
  /**
   * Eviction walks `handled` from its oldest entry. A fresh iterator per eviction
   * would start at the table's first slot and step over every entry deleted
   * since V8 last compacted it, the evicted ones included (quadratic once the
   * store is full), so one iterator lives on; V8 keeps it valid across deletes
   * and rehashes, and everything before it has already been evicted.
   */
  private oldest: Iterator<string> | undefined;
  /**
   * Claims held now. Apart from `handled` so that making room never takes one:
   * a claim forgotten while its handlers run would let a retry of the same
   * delivery claim it again and run them a second time, alongside.
   */
  private readonly held = new Map<string, HeldClaim>();
  /** When `held` is next swept of lapsed claims: it doubles, so a sweep costs O(1) a claim however many are live. */
  private sweepAt: number;
  private readonly now: () => number;
  /** For `ordering`; the oldest resource no claim holds is forgotten past `maxEntries` (see `evictResource`). */
  private readonly resources = new Map<string, Resource>();

  /** @throws TypeError when `maxEntries` is not a whole number from 1 to 16 777 216 */
  constructor(options: MemoryReplayStoreOptions = {}) {
    const maxEntries = options.maxEntries ?? 100_000;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1 || maxEntries > 2 ** 24) {
      throw new TypeError(`mitpo-webhooks: maxEntries must be a whole number from 1 to 16777216 (got ${String(maxEntries)})`);
    }
    this.maxEntries = maxEntries;
    this.sweepAt = maxEntries;
    this.now = options.now ?? Date.now;
  }

  /** How many keys are held now, handled and claimed (lapsed ones included until they are looked up, swept or evicted). */
  get size(): number {
    return this.handled.size + this.held.size;
  }

  async claim(key: string, inFlightTtlMs: number, token?: string): Promise<ClaimResult> {
    const now = this.now();
    const answer = this.lookUp(key, now);
    if (answer !== undefined) return answer;
    if (this.held.size >= this.sweepAt) this.sweepLapsedClaims(now);
    this.held.set(key, { expiresAt: now + inFlightTtlMs, token });
    return 'claimed';
  }

  async complete(key: string, retentionMs: number): Promise<void> {
    // Also when the claim lapsed meanwhile: the handlers did succeed, so the key is kept all the same.
    this.held.delete(key);
    // Deleted first so that it goes to the newest end, not where an earlier completion left it.
    if (!this.handled.delete(key) && this.handled.size >= this.maxEntries) this.forgetOldestHandled();
    this.handled.set(key, this.now() + retentionMs);
  }

  async release(key: string, token?: string): Promise<void> {
    const claim = this.held.get(key);
    if (claim === undefined) return;
    if (token !== undefined && claim.token !== token) return;
    this.held.delete(key);
  }

  async renew(key: string, inFlightTtlMs: number, token: string): Promise<boolean> {
    const claim = this.held.get(key);
    if (claim === undefined || claim.token !== token) return false;
    claim.expiresAt = this.now() + inFlightTtlMs;
    return true;
  }

  /** `done` or `in_flight` for a key a live entry holds; undefined (after forgetting a lapsed one) when it can be claimed. */
  private lookUp(key: string, now: number): 'done' | 'in_flight' | undefined {
    const handledUntil = this.handled.get(key);
    if (handledUntil !== undefined) {
      if (handledUntil > now) return 'done';
      this.handled.delete(key);
    }
    const claim = this.held.get(key);
    if (claim !== undefined) {
      if (claim.expiresAt > now) return 'in_flight';
      this.held.delete(key);
    }
    return undefined;
  }

  async claimInOrder(key: string, order: EventOrder, inFlightTtlMs: number, token: string): Promise<OrderedClaimResult> {
    const now = this.now();
    const answer = this.lookUp(key, now);
    if (answer !== undefined) return answer;
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
   * event of it could run alongside. Looks at 32 only; if all are held, the map
   * grows by one, and does not shrink back when they are released later.
   */
  private evictResource(now: number): void {
    let looked = 0;
    for (const [name, resource] of this.resources) {
      if (resource.holder === undefined || resource.heldUntil <= now) {
        this.resources.delete(name);
        return;
      }
      if ((looked += 1) >= 32) return;
    }
  }

  /** Past `maxEntries`, the oldest handled key goes: one step, however the map was used. */
  private forgetOldestHandled(): void {
    let next = this.oldest?.next();
    if (next === undefined || next.done === true) {
      this.oldest = this.handled.keys();
      next = this.oldest.next();
    }
    if (next.done !== true) this.handled.delete(next.value);
  }

  /**
   * Forgets claims whose in-flight TTL lapsed: the pipeline settles or renews
   * every claim it takes, so only a caller that claimed and never settled leaves
   * one. The next sweep waits until twice as many are held as are live now.
   */
  private sweepLapsedClaims(now: number): void {
    for (const [key, claim] of this.held) if (claim.expiresAt <= now) this.held.delete(key);
    this.sweepAt = Math.max(this.maxEntries, 2 * this.held.size);
  }
}
