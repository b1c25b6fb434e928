import { randomUUID } from 'node:crypto';
import type { ClaimResult, ReplayStore } from './replay-store';

/** Told when the store fails after the claim was taken; such a failure never changes the answer. */
export type ClaimTrouble = (message: string, error: unknown) => void;

/**
 * One attempt's hold on a delivery key, from the claim until its handlers
 * settle. While the handlers run the claim is renewed every third of
 * `inFlightTtl` (when the store can renew), so it never lapses under a live
 * handler however slow, and a retry meanwhile is 409, never a second run. The
 * in-flight TTL only ever frees a claim whose process died. Every call carries
 * this attempt's token, so a late release cannot remove another attempt's claim.
 */
export class DeliveryClaim {
  private readonly renewal: NodeJS.Timeout | undefined;

  private constructor(
    private readonly store: ReplayStore,
    private readonly key: string,
    private readonly token: string,
    inFlightTtlMs: number,
    trouble: ClaimTrouble,
  ) {
    const renew = store.renew?.bind(store);
    if (renew !== undefined) {
      this.renewal = setInterval(() => {
        // Through a promise, so a store whose renew() throws at once is reported like one that rejects.
        Promise.resolve()
          .then(() => renew(key, inFlightTtlMs, token))
          .then(
            (held) => {
              if (!held) trouble('the replay store lost a claim while its handlers ran; a retry may run them again', undefined);
            },
            (error: unknown) => trouble('the replay store could not renew a claim while its handlers ran', error),
          );
      }, inFlightTtlMs / 3);
      this.renewal.unref();
    }
  }

  /**
   * Claims `key` for this attempt.
   * @returns the claim when this attempt is to run the handlers, else what the store answered
   * @throws whatever the store throws (the pipeline answers 503)
   */
  static async take(
    store: ReplayStore,
    key: string,
    inFlightTtlMs: number,
    trouble: ClaimTrouble,
  ): Promise<DeliveryClaim | Exclude<ClaimResult, 'claimed'>> {
    const token = randomUUID();
    const result: unknown = await store.claim(key, inFlightTtlMs, token);
    if (result === 'claimed') return new DeliveryClaim(store, key, token, inFlightTtlMs, trouble);
    if (result === 'in_flight' || result === 'done') return result;
    throw new Error(`the replay store's claim() answered ${JSON.stringify(result)}`);
  }

  /** Marks the delivery handled: a retry is then answered as a duplicate. @throws what the store throws */
  async complete(retentionMs: number): Promise<void> {
    clearInterval(this.renewal);
    await this.store.complete(this.key, retentionMs, this.token);
  }

  /** Lets the delivery be handled again (a handler failed). @throws what the store throws */
  async release(): Promise<void> {
    clearInterval(this.renewal);
    await this.store.release(this.key, this.token);
  }
}
