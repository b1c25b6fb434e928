import fc from 'fast-check';
import { MemoryReplayStore } from '../../src';

/** The store's semantics in the plainest form: keys in claim order, the oldest slot freed when the ring is full. */
class ReferenceStore {
  private ring: Array<string | undefined> = [];
  private entries = new Map<string, { slot: number; done: boolean; expiresAt: number }>();
  private oldest = 0;
  constructor(
    private readonly max: number,
    private readonly now: () => number,
  ) {}
  claim(key: string, ttl: number) {
    const entry = this.entries.get(key);
    if (entry) {
      if (entry.expiresAt > this.now()) return entry.done ? 'done' : 'in_flight';
      this.entries.delete(key);
    }
    this.insert(key, false, this.now() + ttl);
    return 'claimed';
  }
  complete(key: string, retention: number) {
    const entry = this.entries.get(key);
    if (!entry) return this.insert(key, true, this.now() + retention);
    entry.done = true;
    entry.expiresAt = this.now() + retention;
  }
  release(key: string) {
    const entry = this.entries.get(key);
    if (entry && !entry.done) this.entries.delete(key);
  }
  get size() {
    return this.entries.size;
  }
  private insert(key: string, done: boolean, expiresAt: number) {
    if (this.ring.length - this.oldest === this.max) {
      const old = this.ring[this.oldest];
      if (old !== undefined && this.entries.get(old)?.slot === this.oldest) this.entries.delete(old);
      this.oldest += 1;
    }
    this.ring.push(key);
    this.entries.set(key, { slot: this.ring.length - 1, done, expiresAt });
  }
}

const hexKey = fc.integer({ min: 0, max: 11 }).map((n) => n.toString(16).padStart(64, String.fromCharCode(97 + (n % 6))));
const anyKey = fc.oneof(hexKey, fc.constantFrom('a', 'b', 'delivery-1', 'Ü'));
const op = fc.oneof(
  fc.record({ kind: fc.constant('claim' as const), key: anyKey, ttl: fc.integer({ min: 1, max: 50 }) }),
  fc.record({ kind: fc.constant('complete' as const), key: anyKey, ttl: fc.integer({ min: 1, max: 500 }) }),
  fc.record({ kind: fc.constant('release' as const), key: anyKey, ttl: fc.constant(0) }),
  fc.record({ kind: fc.constant('tick' as const), key: fc.constant(''), ttl: fc.integer({ min: 1, max: 60 }) }),
);

describe('MemoryReplayStore', () => {
  it('answers every sequence of operations as the plain reference model does', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.array(op, { maxLength: 300 }), async (max, ops) => {
        let clock = 1_000;
        const store = new MemoryReplayStore({ maxEntries: max, now: () => clock });
        const model = new ReferenceStore(max, () => clock);
        for (const { kind, key, ttl } of ops) {
          if (kind === 'tick') clock += ttl;
          else if (kind === 'claim') expect(await store.claim(key, ttl)).toBe(model.claim(key, ttl));
          else if (kind === 'complete') {
            await store.complete(key, ttl);
            model.complete(key, ttl);
          } else {
            await store.release(key);
            model.release(key);
          }
          expect(store.size).toBe(model.size);
          expect(store.size).toBeLessThanOrEqual(max);
        }
      }),
      { seed: 20_261_127, numRuns: 400 },
    );
  });
});
