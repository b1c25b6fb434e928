import { MemoryReplayStore, MitpoWebhooks, type ReplayStore } from '../../src';
import { SECRET } from '../helpers/recorder';

function storeWithClock(maxEntries?: number) {
  const clock = { now: 1_000_000 };
  const store = new MemoryReplayStore({ now: () => clock.now, ...(maxEntries === undefined ? {} : { maxEntries }) });
  return { store, clock };
}

describe('MemoryReplayStore', () => {
  it('goes claimed → in_flight → done through complete, and keeps done for the retention', async () => {
    const { store, clock } = storeWithClock();
    expect(await store.claim('k', 1000)).toBe('claimed');
    expect(await store.claim('k', 1000)).toBe('in_flight');
    await store.complete('k', 60_000);
    expect(await store.claim('k', 1000)).toBe('done');
    clock.now += 59_999;
    expect(await store.claim('k', 1000)).toBe('done');
    clock.now += 2;
    expect(await store.claim('k', 1000)).toBe('claimed');
  });

  it('forgets a released claim so the retry can claim it again', async () => {
    const { store } = storeWithClock();
    expect(await store.claim('k', 1000)).toBe('claimed');
    await store.release('k');
    expect(await store.claim('k', 1000)).toBe('claimed');
  });

  it('never releases a completed key', async () => {
    const { store } = storeWithClock();
    await store.claim('k', 1000);
    await store.complete('k', 60_000);
    await store.release('k');
    expect(await store.claim('k', 1000)).toBe('done');
  });

  it('lets an abandoned claim (a crashed process) expire after its in-flight TTL', async () => {
    const { store, clock } = storeWithClock();
    expect(await store.claim('k', 5000)).toBe('claimed');
    clock.now += 4999;
    expect(await store.claim('k', 5000)).toBe('in_flight');
    clock.now += 2;
    expect(await store.claim('k', 5000)).toBe('claimed');
  });

  it('holds at most maxEntries keys, dropping the oldest first', async () => {
    const { store } = storeWithClock(3);
    for (const key of ['a', 'b', 'c', 'd', 'e']) {
      await store.claim(key, 1000);
      await store.complete(key, 60_000);
    }
    expect(store.size).toBe(3);
    expect(await store.claim('e', 1000)).toBe('done');
    expect(await store.claim('c', 1000)).toBe('done');
    expect(await store.claim('a', 1000)).toBe('claimed');
    expect(store.size).toBe(3);
  });

  it('never forgets a delivery still being handled to make room, so its retry meanwhile is in_flight, not run again', async () => {
    const { store } = storeWithClock(2);
    expect(await store.claim('slow', 60_000, 'first')).toBe('claimed');
    for (const key of ['a', 'b', 'c']) {
      await store.claim(key, 1000);
      await store.complete(key, 60_000);
    }
    expect(await store.claim('slow', 60_000, 'retry')).toBe('in_flight');
    expect(await store.claim('c', 1000)).toBe('done');
    expect(store.size).toBe(2);
  });

  it('forgets a claim whose in-flight TTL has lapsed (its process died) like any settled key', async () => {
    const { store, clock } = storeWithClock(2);
    await store.claim('crashed', 1000);
    clock.now += 1001;
    await store.claim('a', 1000);
    await store.claim('b', 1000);
    expect(store.size).toBe(2);
    expect(await store.claim('a', 1000)).toBe('in_flight');
    expect(await store.claim('b', 1000)).toBe('in_flight');
  });

  it('stays bounded under a flood of distinct keys once their claims settle or lapse', async () => {
    const { store, clock } = storeWithClock(1000);
    for (let i = 0; i < 20_000; i++) {
      const key = `key-${i}`;
      await store.claim(key, 100, key);
      if (i % 3 === 0) await store.complete(key, 60_000);
      else if (i % 3 === 1) await store.release(key, key);
      // Every third claim is abandoned: its process died, and its TTL lapses 100 claims later.
      clock.now += 1;
    }
    await store.claim('one more', 100);
    expect(store.size).toBe(1000);
  });

  it('goes past maxEntries only by the deliveries being handled at that moment', async () => {
    const { store } = storeWithClock(10);
    for (let i = 0; i < 10; i++) await store.claim(`done-${i}`, 1000).then(() => store.complete(`done-${i}`, 60_000));
    for (let i = 0; i < 50; i++) await store.claim(`running-${i}`, 1000);
    expect(store.size).toBe(50);
    for (let i = 0; i < 50; i++) await store.complete(`running-${i}`, 60_000);
    await store.claim('next', 1000);
    expect(store.size).toBe(50);
  });
});

describe('MemoryReplayStore eviction with released and re-claimed keys', () => {
  it('never drops a re-claimed key because of the slot its released claim left behind', async () => {
    const { store } = storeWithClock(3);
    await store.claim('a', 1000);
    await store.release('a');
    await store.claim('b', 1000);
    await store.claim('a', 1000); // a again, in a newer slot
    await store.claim('c', 1000); // the ring is full: frees a's stale slot, nothing else
    expect(await store.claim('a', 1000)).toBe('in_flight');
    expect(await store.claim('b', 1000)).toBe('in_flight');
    await store.complete('b', 60_000);
    await store.claim('d', 1000); // now b, the oldest settled key, goes
    expect(store.size).toBe(3);
    expect(await store.claim('a', 1000)).toBe('in_flight');
    expect(await store.claim('b', 1000)).toBe('claimed');
  });

  it('keeps a completed key in its claim-time place, so completion does not extend its life in the ring', async () => {
    const { store } = storeWithClock(2);
    await store.claim('a', 1000);
    await store.claim('b', 1000);
    await store.complete('a', 60_000);
    await store.claim('c', 1000);
    expect(await store.claim('a', 1000)).toBe('claimed');
  });

  it('completes the right key when the claimed one was evicted and its place reused before the handlers finished', async () => {
    const { store } = storeWithClock(1);
    expect(await store.claim('a', 1000)).toBe('claimed');
    // One entry only: recording x evicts a and takes its place in the ring.
    await store.complete('x', 60_000);
    await store.complete('a', 60_000);
    expect(await store.claim('a', 1000)).toBe('done');
  });

  it('keeps a key being handled as in flight when another key completes after taking over its place', async () => {
    const { store } = storeWithClock(2);
    await store.claim('a', 1000);
    await store.claim('b', 1000);
    await store.claim('c', 1000); // evicts a; c sits where a was
    await store.complete('a', 60_000); // a is gone: recorded anew, evicting b
    expect(await store.claim('c', 1000)).toBe('in_flight');
  });
});

describe('MemoryReplayStore with attempts that overlap', () => {
  it('keeps the second attempt’s claim when the first attempt releases late', async () => {
    let clock = 0;
    const store: ReplayStore = new MemoryReplayStore({ now: () => clock });
    expect(await store.claim('k', 1_000, 'first')).toBe('claimed');
    clock += 5_000; // the first attempt's process stalled past its TTL
    expect(await store.claim('k', 1_000, 'second')).toBe('claimed');
    await store.release('k', 'first');
    expect(await store.claim('k', 1_000, 'third')).toBe('in_flight');
  });
});

describe('the default MemoryReplayStore costs memory by use, not up front', () => {
  it('allocates no store capacity when 100 receivers are built', () => {
    const before = process.memoryUsage().arrayBuffers;
    const receivers = Array.from({ length: 100 }, () => new MitpoWebhooks({ secret: SECRET }));
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(receivers).toHaveLength(100);
    expect(grown).toBeLessThan(5 * 1024 * 1024);
  });
});
