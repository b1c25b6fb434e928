import { checkOptionKeys, shownValue } from '../option-keys';
import type { EventOrder } from '../ordering/event-order';
import type { ClaimResult, OrderedClaimResult, ReplayStore } from './replay-store';

/** Options of {@link MemoryReplayStore}. */
export interface MemoryReplayStoreOptions {
  /**
   * Most handled keys kept at once (the oldest forgotten first), most
   * deliveries in flight at once, and most resources' applied positions
   * (`ordering`). A claim never takes a handled key's place (its delivery may
   * yet fail), and is never forgotten to make room: with this many in flight, a
   * new claim is refused (the delivery is answered 503 and retried). Default
   * 100 000 (about 14 MB of handled keys when full, about 230 bytes a claim in
   * flight, and 16 MB of positions with `ordering`).
   */
  maxEntries?: number | undefined;
  /** The clock, in milliseconds since the epoch; for tests. Default `Date.now`. */
  now?: (() => number) | undefined;
}

/** A claim not yet completed or released: a delivery being handled, or a resource's turn taken. */
interface Hold {
  until: number;
  /** The claim's owner. */
  token: string | undefined;
}

/** A resource's last applied position (`ordering`), and until when it counts. */
interface Applied {
  position: number;
  until: number;
}

/**
 * A replay store in this process's memory: right for one receiver process.
 * Several instances behind a load balancer need a shared store such as
 * `RedisReplayStore` from `mitpo-webhooks/redis`.
 *
 * Keeps at most `maxEntries` handled keys, the oldest forgotten first when a
 * delivery is handled, so size it above the deliveries you receive within
 * `maxEventAge`. A delivery whose handlers are still running keeps its claim
 * however many others arrive, so MITPO's retry meanwhile is 409 `in_flight`,
 * never a second run; with `maxEntries` deliveries in flight at once, the next
 * claim is refused (503, retried) rather than any forgotten. A claim takes no
 * handled key's place, and a released one frees its own at once, so no stream
 * of failing or replayed deliveries can push a handled one out early. Memory
 * grows with use.
 *
 * @example
 * new MitpoWebhooks({ secret, replay: new MemoryReplayStore({ maxEntries: 50_000 }) });
 */
export class MemoryReplayStore implements ReplayStore {
  /** The most handled keys kept, and apart from them the most claims held at once. */
  readonly maxEntries: number;
  /** Handled keys, and until when each answers `done`. */
  private readonly handled: OldestFirst<number>;
  /**
   * Claims held now. Apart from `handled` so that making room never takes one:
   * a claim forgotten while its handlers run would let a retry of the same
   * delivery claim it again and run them a second time, alongside. Bounded by
   * `maxEntries` of their own: a claim that took a handled key's place would
   * lose it for good if its delivery failed, and a replay of it would run again.
   */
  private readonly held: Holds;
  /** `ordering`: each resource's last applied position, bounded like the handled keys. */
  private readonly applied: OldestFirst<Applied>;
  /** `ordering`: who holds each resource's turn; never forgotten to make room, or a second event of it could run alongside. */
  private readonly turns: Holds;
  private readonly now: () => number;

  /** @throws TypeError on an unknown option, a `maxEntries` that is not a whole number from 1 to 16 777 216, or a `now` that is not a function */
  constructor(options: MemoryReplayStoreOptions = {}) {
    checkOptionKeys(options, 'MemoryReplayStore', ['maxEntries', 'now']);
    const maxEntries = options.maxEntries ?? 100_000;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1 || maxEntries > 2 ** 24) {
      throw new TypeError(`mitpo-webhooks: maxEntries must be a whole number from 1 to 16777216 (got ${shownValue(maxEntries)})`);
    }
    this.maxEntries = maxEntries;
    this.handled = new OldestFirst();
    this.held = new Holds();
    this.applied = new OldestFirst();
    this.turns = new Holds();
    // Read at each call: a test's fake Date replaces Date.now after the store was built.
    const now = options.now ?? (() => Date.now());
    if (typeof now !== 'function') throw new TypeError('mitpo-webhooks: MemoryReplayStore now must be a function returning milliseconds since the epoch');
    this.now = now;
  }

  /** How many keys are held now, handled and claimed (lapsed claims included until they are looked up or forgotten to make room); at most twice `maxEntries`. */
  get size(): number {
    return this.handled.size + this.held.size;
  }

  async claim(key: string, inFlightTtlMs: number, token?: string): Promise<ClaimResult> {
    const now = this.now();
    const answer = this.lookUp(key, now);
    if (answer !== undefined) return answer;
    this.roomForClaim(now);
    this.held.set(key, { until: now + inFlightTtlMs, token });
    return 'claimed';
  }

  async complete(key: string, retentionMs: number): Promise<void> {
    // Also when the claim lapsed meanwhile: the handlers did succeed, so the key is kept all the same.
    const now = this.now();
    this.held.delete(key);
    // Room only when full, and only for a key not kept already: the oldest handled key's.
    // Counted apart from the claims, so that no claim, which may yet be released, ever
    // pushes a handled key out (nor a handled key a lapsed claim, whose handlers may
    // still be running and renew it).
    if (this.handled.size >= this.maxEntries && this.handled.get(key) === undefined) this.handled.deleteOldest();
    this.handled.set(key, now + retentionMs);
  }

  async release(key: string, token?: string): Promise<void> {
    this.held.release(key, token);
  }

  async renew(key: string, inFlightTtlMs: number, token: string): Promise<boolean> {
    return this.held.renew(key, token, this.now() + inFlightTtlMs);
  }

  async claimInOrder(key: string, order: EventOrder, inFlightTtlMs: number, token: string): Promise<OrderedClaimResult> {
    const now = this.now();
    const answer = this.lookUp(key, now);
    if (answer !== undefined) return answer;
    // Looked at first, so a lapsed turn is forgotten whatever the answer.
    const turn = this.turns.live(order.resource, now);
    const applied = this.appliedPosition(order.resource, now);
    if (applied !== undefined && applied > order.position) return { stale: applied };
    if (turn !== undefined && turn.token !== token) return 'resource_in_flight';
    this.roomForClaim(now);
    // A live turn goes with a live claim, so only lapsed ones can take the store past `maxEntries` turns.
    if (this.turns.size >= this.maxEntries) this.turns.forgetLapsed(now);
    this.turns.set(order.resource, { until: now + inFlightTtlMs, token });
    this.held.set(key, { until: now + inFlightTtlMs, token });
    return 'claimed';
  }

  async completeInOrder(key: string, order: EventOrder, retentionMs: number, orderRetentionMs: number, token: string): Promise<void> {
    const now = this.now();
    const applied = this.appliedPosition(order.resource, now);
    if (applied === undefined || applied < order.position) {
      if (applied === undefined && this.applied.size >= this.maxEntries) this.applied.deleteOldest();
      this.applied.set(order.resource, { position: order.position, until: now + orderRetentionMs });
    }
    // A lapsed turn goes whoever took it last, as its expiry removes it in Redis.
    if (this.turns.live(order.resource, now) !== undefined) this.turns.release(order.resource, token);
    await this.complete(key, retentionMs);
  }

  async releaseInOrder(key: string, order: EventOrder, token: string): Promise<void> {
    this.turns.release(order.resource, token);
    await this.release(key, token);
  }

  async renewInOrder(key: string, order: EventOrder, inFlightTtlMs: number, token: string): Promise<boolean> {
    const until = this.now() + inFlightTtlMs;
    const turnHeld = this.turns.renew(order.resource, token, until);
    const claimHeld = this.held.renew(key, token, until);
    // A turn another event of the resource took once it lapsed is lost as well: the two run
    // at once. (On Redis the claim lapses with the turn, so its renewal says so there.)
    return turnHeld && claimHeld;
  }

  /**
   * Room for one more claim: never a handled key's place. Lapsed claims are
   * forgotten once `maxEntries` are held, before any claim is refused.
   * @throws Error when `maxEntries` deliveries are being handled at once
   */
  private roomForClaim(now: number): void {
    if (this.held.size >= this.maxEntries) this.held.forgetLapsed(now);
    if (this.held.size >= this.maxEntries) {
      throw new Error(`MemoryReplayStore is full: ${this.maxEntries} deliveries (maxEntries) are being handled at once`);
    }
  }

  /** `done` or `in_flight` for a key a live entry holds; undefined (after forgetting a lapsed one) when it can be claimed. */
  private lookUp(key: string, now: number): 'done' | 'in_flight' | undefined {
    const handledUntil = this.handled.get(key);
    if (handledUntil !== undefined) {
      if (handledUntil > now) return 'done';
      this.handled.delete(key);
    }
    return this.held.live(key, now) === undefined ? undefined : 'in_flight';
  }

  /** The resource's applied position while it counts; a lapsed one is forgotten. */
  private appliedPosition(resource: string, now: number): number | undefined {
    const applied = this.applied.get(resource);
    if (applied === undefined || applied.until > now) return applied?.position;
    this.applied.delete(resource);
    return undefined;
  }
}

/**
 * Values in the order they were last set, the oldest forgotten in one step. A
 * fresh iterator per eviction would start at the table's first slot and step
 * over every entry deleted since V8 last compacted it, the evicted ones
 * included (quadratic once full), so one iterator lives on; V8 keeps it valid
 * across deletes and rehashes, and everything before it has already been evicted.
 */
class OldestFirst<V> {
  private readonly entries = new Map<string, V>();
  private oldest: Iterator<string> | undefined;

  get size(): number {
    return this.entries.size;
  }

  get(key: string): V | undefined {
    return this.entries.get(key);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  /** Sets `key` as the newest entry (deleted first, so an update moves it). */
  set(key: string, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
  }

  deleteOldest(): void {
    let next = this.oldest?.next();
    if (next === undefined || next.done === true) {
      this.oldest = this.entries.keys();
      next = this.oldest.next();
    }
    if (next.done !== true) this.entries.delete(next.value);
  }
}

/**
 * Claims, each held until it is released or lapses: never forgotten to make
 * room. Only a caller that claims and never settles leaves lapsed ones (the
 * pipeline settles or renews every claim it takes); they are forgotten when
 * the room is needed. `earliest` is at most the earliest `until` held, so that
 * a full store looks through its claims only once one may have lapsed.
 */
class Holds {
  private readonly entries = new Map<string, Hold>();
  private earliest = Infinity;

  get size(): number {
    return this.entries.size;
  }

  /** The hold on `key` if it has not lapsed by `now`; a lapsed one is forgotten. */
  live(key: string, now: number): Hold | undefined {
    const hold = this.entries.get(key);
    if (hold === undefined || hold.until > now) return hold;
    this.entries.delete(key);
    return undefined;
  }

  set(key: string, hold: Hold): void {
    this.entries.set(key, hold);
    this.earliest = Math.min(this.earliest, hold.until);
  }

  /** Forgets every hold lapsed by `now`. */
  forgetLapsed(now: number): void {
    if (now < this.earliest) return;
    this.earliest = Infinity;
    for (const [key, { until }] of this.entries) {
      if (until <= now) this.entries.delete(key);
      else this.earliest = Math.min(this.earliest, until);
    }
  }

  /** @returns whether `key` was held */
  delete(key: string): boolean {
    return this.entries.delete(key);
  }

  /** Lets go of `key`, if `token` holds it (any holder without a token). */
  release(key: string, token: string | undefined): void {
    const hold = this.entries.get(key);
    if (hold !== undefined && (token === undefined || hold.token === token)) this.entries.delete(key);
  }

  /**
   * Extends `token`'s hold on `key` to `until`. A lapsed hold no one else has
   * taken is still `token`'s, until a look-up of `key` forgets it or its place is needed.
   * @returns false when `token` no longer holds `key`
   */
  renew(key: string, token: string, until: number): boolean {
    const hold = this.entries.get(key);
    if (hold === undefined || hold.token !== token) return false;
    hold.until = until;
    this.earliest = Math.min(this.earliest, until);
    return true;
  }
}
