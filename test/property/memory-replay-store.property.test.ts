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
 * The store's contract in the plainest form: at most `max` handled keys and at
 * most `max` claims. A handled key needing a place in a full store takes the
 * oldest one's (in the order they were completed); a claim never takes a handled
 * key's place, a live claim never goes, and a claim is refused when `max` live
 * claims are held (lapsed ones are forgotten first).
 */
class ReferenceStore {
  private handled: Handled[] = [];
  private held: Held[] = [];
  constructor(
    private readonly max: number,
    private readonly now: () => number,
  ) {}
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
    if (this.held.length >= this.max) this.forgetLapsed();
    if (this.held.length >= this.max) return 'full';
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
  private forgetLapsed() {
    this.held = this.held.filter((entry) => entry.expiresAt > this.now());
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
        for (const { kind, key, ttl, token } of ops) {
          if (kind === 'tick') clock += ttl;
          else if (kind === 'claim') expect(await store.claim(key, ttl, token).catch(() => 'full')).toBe(model.claim(key, ttl, token));
          else if (kind === 'renew') expect(await store.renew(key, ttl, token!)).toBe(model.renew(key, ttl, token!));
          else if (kind === 'complete') {
            await store.complete(key, ttl);
            model.complete(key, ttl);
          } else {
            await store.release(key, token);
            model.release(key, token);
          }
          expect(store.size).toBe(model.size);
          // At most max handled keys and max claims.
          expect(store.size).toBeLessThanOrEqual(2 * max);
        }
      }),
      { seed: 20_261_127, numRuns: 400 },
    );
  });

  it('keeps every handled delivery of a full store however many failing replays of other captures arrive', async () => {
    // The eviction attack: replaying captured deliveries whose handlers fail
    // (claim, then release) must never push a handled key out, since a claim
    // takes no handled key's place and a released one frees its own at once.
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.integer({ min: 0, max: 5_000 }), { minLength: 1, maxLength: 3_000, size: 'max' }),
        async (max, replays) => {
          const store = new MemoryReplayStore({ maxEntries: max });
          const handled = Array.from({ length: max }, (_, n) => `handled-${n}`);
          for (const key of handled) {
            expect(await store.claim(key, 60_000, 'paid')).toBe('claimed');
            await store.complete(key, 3_600_000);
          }
          for (const n of replays) {
            const key = `replay-${n}`;
            const token = `attempt-${n}`;
            if ((await store.claim(key, 60_000, token)) === 'claimed') await store.release(key, token);
          }
          for (const key of handled) expect(await store.claim(key, 60_000, 'again')).toBe('done');
        },
      ),
      { seed: 20_261_130, numRuns: 200 },
    );
  });
});
