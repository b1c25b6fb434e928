import fc from 'fast-check';
import { MemoryReplayStore } from '../../src';

interface Handled {
  key: string;
  expiresAt: number;
}

interface Held {
  key: string;
  expiresAt: number;
  token: string | undefined;
}

/**
 * The store's contract in the plainest form: the handled keys in the order
 * they were completed, at most `max` of them, the first one out when another
 * needs room; and the claims held now, never forgotten to make room, only
 * when they lapse (swept once `max` of them, then twice the live ones, are held).
 */
class ReferenceStore {
  private handled: Handled[] = [];
  private held: Held[] = [];
  private sweepAt: number;
  constructor(
    private readonly max: number,
    private readonly now: () => number,
  ) {
    this.sweepAt = max;
  }
  claim(key: string, ttl: number, token: string | undefined) {
    const done = this.handled.find((entry) => entry.key === key);
    if (done) {
      if (done.expiresAt > this.now()) return 'done';
      this.handled = this.handled.filter((entry) => entry !== done);
    }
    const claim = this.held.find((entry) => entry.key === key);
    if (claim) {
      if (claim.expiresAt > this.now()) return 'in_flight';
      this.held = this.held.filter((entry) => entry !== claim);
    }
    if (this.held.length >= this.sweepAt) {
      this.held = this.held.filter((entry) => entry.expiresAt > this.now());
      this.sweepAt = Math.max(this.max, 2 * this.held.length);
    }
    this.held.push({ key, expiresAt: this.now() + ttl, token });
    return 'claimed';
  }
  complete(key: string, retention: number) {
    this.held = this.held.filter((entry) => entry.key !== key);
    const before = this.handled.length;
    this.handled = this.handled.filter((entry) => entry.key !== key);
    if (this.handled.length === before && this.handled.length >= this.max) this.handled.shift();
    this.handled.push({ key, expiresAt: this.now() + retention });
  }
  release(key: string, token: string | undefined) {
    this.held = this.held.filter((entry) => entry.key !== key || (token !== undefined && token !== entry.token));
  }
  renew(key: string, ttl: number, token: string) {
    const claim = this.held.find((entry) => entry.key === key);
    if (!claim || claim.token !== token) return false;
    claim.expiresAt = this.now() + ttl;
    return true;
  }
  get size() {
    return this.handled.length + this.held.length;
  }
  get handledKeys() {
    return this.handled.length;
  }
  get live() {
    return this.held.filter((entry) => entry.expiresAt > this.now()).length;
  }
}

const hexKey = fc.integer({ min: 0, max: 11 }).map((n) => n.toString(16).padStart(64, String.fromCharCode(97 + (n % 6))));
const anyKey = fc.oneof(hexKey, fc.constantFrom('a', 'b', 'delivery-1', 'Ü'));
const token = fc.option(fc.constantFrom('t1', 't2', 't3'), { nil: undefined });
const op = fc.oneof(
  fc.record({ kind: fc.constant('claim' as const), key: anyKey, ttl: fc.integer({ min: 1, max: 50 }), token }),
  fc.record({ kind: fc.constant('complete' as const), key: anyKey, ttl: fc.integer({ min: 1, max: 500 }), token }),
  fc.record({ kind: fc.constant('release' as const), key: anyKey, ttl: fc.constant(0), token }),
  fc.record({ kind: fc.constant('renew' as const), key: anyKey, ttl: fc.integer({ min: 1, max: 50 }), token: fc.constantFrom('t1', 't2') }),
  fc.record({ kind: fc.constant('tick' as const), key: fc.constant(''), ttl: fc.integer({ min: 1, max: 60 }), token }),
);

describe('MemoryReplayStore, against an independent model', () => {
  it('answers every sequence of operations as the plain reference model does', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.array(op, { maxLength: 300, size: 'max' }), async (max, ops) => {
        let clock = 1_000;
        const store = new MemoryReplayStore({ maxEntries: max, now: () => clock });
        const model = new ReferenceStore(max, () => clock);
        let peakLive = 0;
        for (const { kind, key, ttl, token } of ops) {
          if (kind === 'tick') clock += ttl;
          else if (kind === 'claim') expect(await store.claim(key, ttl, token)).toBe(model.claim(key, ttl, token));
          else if (kind === 'renew') expect(await store.renew(key, ttl, token!)).toBe(model.renew(key, ttl, token!));
          else if (kind === 'complete') {
            await store.complete(key, ttl);
            model.complete(key, ttl);
          } else {
            await store.release(key, token);
            model.release(key, token);
          }
          expect(store.size).toBe(model.size);
          // Never more than max handled keys; claims besides, lapsed ones only until a sweep.
          expect(model.handledKeys).toBeLessThanOrEqual(max);
          peakLive = Math.max(peakLive, model.live);
          expect(store.size).toBeLessThanOrEqual(max + Math.max(max, 2 * peakLive));
        }
      }),
      { seed: 20_261_127, numRuns: 400 },
    );
  });

  it('keeps a handled delivery however many failing replays of other captures arrive', async () => {
    // The eviction attack: replaying captured deliveries whose handlers fail
    // (claim, then release) must never push a handled key out, since a released
    // key frees its place at once.
    await fc.assert(
      fc.asyncProperty(
        // Room for the handled key and the one replay being handled at a time.
        fc.integer({ min: 2, max: 50 }),
        fc.array(fc.integer({ min: 0, max: 5_000 }), { minLength: 1, maxLength: 3_000, size: 'max' }),
        async (max, replays) => {
          const store = new MemoryReplayStore({ maxEntries: max });
          const handled = 'f'.repeat(64);
          expect(await store.claim(handled, 60_000, 'paid')).toBe('claimed');
          await store.complete(handled, 3_600_000);
          for (const n of replays) {
            const key = `replay-${n}`;
            const token = `attempt-${n}`;
            if ((await store.claim(key, 60_000, token)) === 'claimed') await store.release(key, token);
          }
          expect(await store.claim(handled, 60_000, 'again')).toBe('done');
        },
      ),
      { seed: 20_261_130, numRuns: 200 },
    );
  });
});
