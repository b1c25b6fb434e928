import fc from 'fast-check';
import { MemoryReplayStore } from '../../src';

interface ModelEntry {
  key: string;
  done: boolean;
  expiresAt: number;
  token: string | undefined;
}

/**
 * The store's contract in the plainest form: a list of live keys in claim
 * order, the first one that is not in flight out when a new key needs room.
 */
class ReferenceStore {
  private entries: ModelEntry[] = [];
  constructor(
    private readonly max: number,
    private readonly now: () => number,
  ) {}
  claim(key: string, ttl: number, token: string | undefined) {
    const entry = this.find(key);
    if (entry) {
      if (entry.expiresAt > this.now()) return entry.done ? 'done' : 'in_flight';
      this.remove(entry);
    }
    this.insert({ key, done: false, expiresAt: this.now() + ttl, token });
    return 'claimed';
  }
  complete(key: string, retention: number) {
    const entry = this.find(key);
    if (!entry) return this.insert({ key, done: true, expiresAt: this.now() + retention, token: undefined });
    entry.done = true;
    entry.expiresAt = this.now() + retention;
    entry.token = undefined;
  }
  release(key: string, token: string | undefined) {
    const entry = this.find(key);
    if (entry && !entry.done && (token === undefined || token === entry.token)) this.remove(entry);
  }
  renew(key: string, ttl: number, token: string) {
    const entry = this.find(key);
    if (!entry || entry.done || entry.token !== token) return false;
    entry.expiresAt = this.now() + ttl;
    return true;
  }
  get size() {
    return this.entries.length;
  }
  get unsettled() {
    return this.entries.filter((entry) => !entry.done).length;
  }
  private find(key: string) {
    return this.entries.find((entry) => entry.key === key);
  }
  private remove(entry: ModelEntry) {
    this.entries = this.entries.filter((other) => other !== entry);
  }
  /** Room is made by dropping the oldest key not in flight; a claim in flight moves to the back, up to 32 looks. */
  private insert(entry: ModelEntry) {
    if (this.entries.length >= this.max) {
      for (let looked = 0; looked < 32 && looked < this.entries.length; looked++) {
        const oldest = this.entries.shift()!;
        if (oldest.done || oldest.expiresAt <= this.now()) break;
        this.entries.push(oldest);
      }
    }
    this.entries.push(entry);
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
      fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.array(op, { maxLength: 300 }), async (max, ops) => {
        let clock = 1_000;
        const store = new MemoryReplayStore({ maxEntries: max, now: () => clock });
        const model = new ReferenceStore(max, () => clock);
        let peak = 0;
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
          // Past maxEntries only by as many claims as were ever unsettled at once.
          peak = Math.max(peak, model.unsettled);
          expect(store.size).toBeLessThanOrEqual(max + peak);
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
        fc.array(fc.integer({ min: 0, max: 5_000 }), { minLength: 1, maxLength: 3_000 }),
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
