import { LiveList, type LiveEntry } from '../live-list';
import type { EventOrder } from '../ordering/event-order';
import type { OrderedClaimResult, ReplayStore } from './replay-store';

/** A failed completion is tried again after 100 ms, then twice as long each time, up to 5 s apart. */
const COMPLETE_RETRY_FIRST_MS = 100;
const COMPLETE_RETRY_MAX_MS = 5000;

/** Told when the store fails after a claim was taken; such a failure never changes the answer. */
export type ClaimTrouble<Owner> = (code: 'claim_lost' | 'replay_store_unavailable', message: string, error: unknown, owner: Owner) => void;

/** One attempt's hold on a delivery key, from the claim until its handlers settle. */
export interface Claim<Owner = unknown> {
  readonly key: string;
  /** Whose claim it is (the delivery's trace), for reporting trouble with it. */
  readonly owner: Owner;
  /** Names this attempt to the store, so a late release cannot remove another attempt's claim. */
  readonly token: string;
  /** With `ordering`: the resource this attempt also holds, and the event's place in it. */
  readonly order: EventOrder | undefined;
  /** Its place among the live claims, which `Claims` renews; not listed once completed or released. */
  live: LiveEntry<Claim<Owner>> | undefined;
  /** Set once its handlers succeeded and only the completion is owed (see `completeLater`). */
  handled: boolean;
}

/**
 * The claims this process holds while their handlers run. Each is renewed
 * every third of `inFlightTtl` (when the store can renew), so a claim never
 * lapses under a live handler however slow, and a retry meanwhile is 409,
 * never a second run: the in-flight TTL only ever frees a claim whose process
 * died. One interval serves every live claim, and stops at a tick that finds
 * none, rather than a timer per delivery.
 */
export class Claims<Owner> {
  /**
   * Tokens need only be unique, not secret: a random prefix per receiver, then a
   * counter. The prefix is drawn at the first claim, not at construction: a
   * Worker makes its receiver in global scope, where workerd allows no random values.
   */
  private tokenPrefix: string | undefined;
  private taken = 0;
  private readonly live = new LiveList<Claim<Owner>>();
  private renewal: ReturnType<typeof setInterval> | undefined;
  /** Completions the store failed, each with its last try (see `completeLater`). */
  private readonly owed = new Set<() => Promise<void>>();
  private stopped = false;

  constructor(
    private readonly store: ReplayStore,
    private readonly inFlightTtlMs: number,
    private readonly trouble: ClaimTrouble<Owner>,
    /** Starts the renewal timer outside the async context of the request that needs it first. */
    private readonly detached: <T>(start: () => T) => T = (start) => start(),
  ) {}

  /**
   * Claims `key` for one attempt, and with `order` its resource's turn too
   * (the store keeps order: the options checked that).
   * @returns the claim when this attempt is to run the handlers, else what the store answered
   * @throws whatever the store throws (the receiver answers 503)
   */
  async take(key: string, owner: Owner, order?: EventOrder): Promise<Claim<Owner> | Exclude<OrderedClaimResult, 'claimed'>> {
    const token = `${(this.tokenPrefix ??= globalThis.crypto.randomUUID())}.${(this.taken += 1)}`;
    const result: unknown =
      order === undefined ? await this.store.claim(key, this.inFlightTtlMs, token) : await this.store.claimInOrder!(key, order, this.inFlightTtlMs, token);
    if (result === 'in_flight' || result === 'done' || (order !== undefined && result === 'resource_in_flight')) return result;
    if (order !== undefined && typeof (result as { stale?: unknown } | null)?.stale === 'number') return result as { stale: number };
    if (result !== 'claimed') throw new Error(`the replay store's claim() answered ${JSON.stringify(result)}`);
    const claim: Claim<Owner> = { key, owner, token, order, live: undefined, handled: false };
    this.list(claim);
    return claim;
  }

  /**
   * Marks the delivery handled for `retentionMs`: a retry is then answered as a
   * duplicate. With ordering, its position is recorded in the same step, kept as
   * long: as long as an older event of the resource could still pass the age check.
   * @throws what the store throws
   */
  complete(claim: Claim<Owner>, retentionMs: number): Promise<void> {
    if (claim.live !== undefined) this.live.remove(claim.live);
    return claim.order === undefined
      ? this.store.complete(claim.key, retentionMs, claim.token)
      : this.store.completeInOrder!(claim.key, claim.order, retentionMs, retentionMs, claim.token);
  }

  /**
   * A completion the store failed (a connection lost for a moment, a failover):
   * tried again in the background, the claim listed (and renewed, when the store
   * can renew) meanwhile. The handlers succeeded and were answered 200, so MITPO
   * will not retry: a replay is 409 until the completion lands and a duplicate
   * after, and with `ordering` the event's position is recorded, so an older event
   * of its resource is still stale. After `inFlightTtl` of failures, or at `stop()`
   * after one last try, it gives up and leaves the claim to lapse; `gaveUp` is told.
   */
  completeLater(claim: Claim<Owner>, retentionMs: number, gaveUp: (error: unknown, atClose: boolean) => void): void {
    const until = Date.now() + this.inFlightTtlMs;
    let delayMs = COMPLETE_RETRY_FIRST_MS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let trying: Promise<void> | undefined;
    const attempt = (): Promise<void> =>
      (trying = new Promise<void>((resolve) => resolve(this.complete(claim, retentionMs))).then(
        () => {
          trying = undefined;
          this.owed.delete(lastTry);
        },
        (error: unknown) => {
          trying = undefined;
          if (this.stopped || Date.now() + delayMs > until) {
            this.owed.delete(lastTry);
            gaveUp(error, this.stopped);
            return;
          }
          delayMs = Math.min(delayMs * 2, COMPLETE_RETRY_MAX_MS);
          later();
        },
      ));
    const later = () => {
      this.list(claim);
      // Outside the request's async context, as the renewal: the retry is no part of its trace.
      timer = this.detached(() => setTimeout(() => void attempt(), delayMs));
      (timer as { unref?: () => void }).unref?.();
    };
    // At stop(): the last try, now, or the one under way (stopped, it is the last).
    const lastTry = (): Promise<void> => {
      clearTimeout(timer);
      return trying ?? attempt();
    };
    claim.handled = true;
    if (this.stopped) {
      void lastTry();
      return;
    }
    this.owed.add(lastTry);
    later();
  }

  /**
   * When the receiver closes, once its deliveries are done with: no timer of ours
   * outlives it (a test runner would count one as an open handle), and each owed
   * completion gets its last try, which `close()` waits for (bounded).
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.renewal);
    this.renewal = undefined;
    await Promise.all([...this.owed].map((lastTry) => lastTry()));
  }

  /** Lets the delivery be handled again (a handler failed), and frees its resource. @throws what the store throws */
  release(claim: Claim<Owner>): Promise<void> {
    if (claim.live !== undefined) this.live.remove(claim.live);
    return claim.order === undefined ? this.store.release(claim.key, claim.token) : this.store.releaseInOrder!(claim.key, claim.order, claim.token);
  }

  /** Lists a claim among the live ones, which the renewal (started with the first, never after stop()) renews. */
  private list(claim: Claim<Owner>): void {
    claim.live = this.live.add(claim);
    if (!this.stopped) this.renewal ??= this.detached(() => this.startRenewal());
  }

  private startRenewal(): ReturnType<typeof setInterval> | undefined {
    if (this.store.renew === undefined && this.store.renewInOrder === undefined) return undefined;
    const renewal = setInterval(() => {
      if (this.live.size === 0) {
        clearInterval(renewal);
        this.renewal = undefined;
        return;
      }
      for (const claim of this.live.values()) this.renew(claim);
    }, this.inFlightTtlMs / 3);
    // Timers are objects with unref() on Node, numbers elsewhere.
    (renewal as { unref?: () => void }).unref?.();
    return renewal;
  }

  private renew(claim: Claim<Owner>): void {
    // Through a promise, so a store whose renew() throws at once is reported like one that rejects.
    Promise.resolve()
      .then(() =>
        claim.order === undefined
          ? (this.store.renew?.(claim.key, this.inFlightTtlMs, claim.token) ?? true)
          : this.store.renewInOrder!(claim.key, claim.order, this.inFlightTtlMs, claim.token),
      )
      .then(
        (held) => {
          // A claim whose completion is owed is not held once that completion landed
          // with its answer lost; and if it truly lapsed, giving up on it is logged.
          if (!held && claim.live?.listed === true && !claim.handled) {
            this.trouble('claim_lost', 'the replay store lost a claim while its handlers ran; a retry may run them again', undefined, claim.owner);
          }
        },
        (error: unknown) => this.trouble('replay_store_unavailable', 'the replay store could not renew a claim while its handlers ran', error, claim.owner),
      );
  }
}
