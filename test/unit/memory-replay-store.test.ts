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

  // Found in a mutation hunt: a renewal to a shorter TTL was never tried. It holds the claim
  // for that TTL from now, as Redis' PX does, and a full store frees its place once it lapses.
  it('renews a claim for the TTL given, a shorter one too: it then lapses and its place is freed', async () => {
    const { store, clock } = storeWithClock(1);
    expect(await store.claim('a', 60_000, 'tok')).toBe('claimed');
    expect(await store.renew('a', 1000, 'tok')).toBe(true);
    clock.now += 1001;
    expect(await store.claim('b', 60_000, 'other')).toBe('claimed');
  });

  it('holds at most maxEntries handled keys, dropping the oldest first', async () => {
    const { store } = storeWithClock(3);
    for (const key of ['a', 'b', 'c', 'd', 'e']) {
      await store.claim(key, 1000);
      await store.complete(key, 60_000);
    }
    expect(store.size).toBe(3);
    expect(await store.claim('e', 1000)).toBe('done');
    expect(await store.claim('c', 1000)).toBe('done');
    expect(await store.claim('a', 1000)).toBe('claimed');
    expect(store.size).toBe(4); // c, d and e handled, and a's claim beside them
    expect(await store.claim('c', 1000)).toBe('done');
    await store.complete('a', 60_000); // c, the oldest, makes room for a
    expect(store.size).toBe(3);
    expect(await store.claim('c', 1000)).toBe('claimed');
  });

  it('never forgets a delivery still being handled to make room, so its retry meanwhile is in_flight, not run again', async () => {
    const { store } = storeWithClock(2);
    expect(await store.claim('slow', 60_000, 'first')).toBe('claimed');
    for (const key of ['a', 'b', 'c']) {
      await store.claim(key, 1000);
      await store.complete(key, 60_000);
    }
    expect(await store.claim('slow', 60_000, 'retry')).toBe('in_flight');
    expect(await store.claim('b', 1000)).toBe('done');
    expect(await store.claim('c', 1000)).toBe('done');
    expect(await store.claim('a', 1000)).toBe('claimed'); // the oldest, forgotten when c was handled
    expect(store.size).toBe(4); // b and c handled, and the claims of slow and a
    expect(await store.claim('slow', 60_000, 'retry')).toBe('in_flight');
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

  it('stays at maxEntries handled keys under a flood of distinct keys that are handled or released', async () => {
    const { store } = storeWithClock(1000);
    for (let i = 0; i < 20_000; i++) {
      const key = `key-${i}`;
      await store.claim(key, 100, key);
      expect(store.size).toBeLessThanOrEqual(1001); // at most 1000 handled keys, and this claim
      if (i % 2 === 0) await store.complete(key, 60_000);
      else await store.release(key, key);
      expect(store.size).toBeLessThanOrEqual(1000);
    }
    expect(store.size).toBe(1000); // the last key was released; the 1000 handled last are kept
    expect(await store.claim('key-19998', 100)).toBe('done');
    expect(await store.claim('key-18000', 100)).toBe('done');
    expect(await store.claim('key-17998', 100)).toBe('claimed');
  });

  it('forgets claims that were never settled once their TTL has lapsed, so abandoned claims stay within maxEntries', async () => {
    const { store, clock } = storeWithClock(1000);
    for (let i = 0; i < 20_000; i++) {
      // Claimed and abandoned, as by a process that died mid-delivery: each lapses 100 claims later.
      await store.claim(`abandoned-${i}`, 100);
      clock.now += 1;
      expect(store.size).toBeLessThanOrEqual(1000);
    }
    expect(await store.claim('abandoned-0', 100)).toBe('claimed');
    expect(await store.claim('abandoned-19999', 100)).toBe('in_flight');
  });

  it('never lets lapsed claims take the places of handled keys', async () => {
    const { store, clock } = storeWithClock(1000);
    // Claimed and abandoned one a millisecond, each lapsing 100 ms later: about 100 live at a time.
    for (let i = 0; i < 5000; i++) {
      await store.claim(`abandoned-${i}`, 100);
      clock.now += 1;
    }
    clock.now += 101;
    for (let i = 0; i < 2000; i++) {
      await store.claim(`quick-${i}`, 100, `quick-${i}`);
      await store.complete(`quick-${i}`, 60_000);
    }
    expect(await store.claim('quick-1000', 100)).toBe('done'); // the 1000 handled last are all kept
    expect(await store.claim('quick-999', 100)).toBe('claimed');
    expect(store.size).toBeLessThanOrEqual(2000); // and the claims left, lapsed ones among them, within maxEntries
  });

  it('forgets lapsed claims, not a live handled key, to make room for a claim', async () => {
    const { store, clock } = storeWithClock(10);
    await store.claim('handled', 100);
    await store.complete('handled', 60_000);
    for (let i = 0; i < 10; i++) await store.claim(`abandoned-${i}`, 100);
    await expect(store.claim('one too many', 100)).rejects.toThrow('is full');
    clock.now += 101;
    expect(await store.claim('new', 100)).toBe('claimed');
    expect(store.size).toBe(2);
    expect(await store.claim('handled', 100)).toBe('done');
  });

  it('keeps maxEntries handled keys beside the claims of slow deliveries, however long they run beside a steady stream', async () => {
    const { store } = storeWithClock(100);
    for (let i = 0; i < 40; i++) await store.claim(`slow-${i}`, 60_000, `slow-${i}`);
    for (let i = 0; i < 20_000; i++) {
      await store.claim(`quick-${i}`, 60_000, `quick-${i}`);
      await store.complete(`quick-${i}`, 60_000);
    }
    expect(store.size).toBe(140);
    for (let i = 0; i < 40; i++) expect(await store.claim(`slow-${i}`, 60_000, 'retry')).toBe('in_flight');
    for (let i = 19_900; i < 20_000; i++) expect(await store.claim(`quick-${i}`, 60_000, 'retry')).toBe('done');
    expect(await store.claim('quick-19899', 60_000, 'retry')).toBe('claimed');
  });

  it('refuses a claim once maxEntries deliveries are being handled at once, and takes one again when a place frees', async () => {
    const { store, clock } = storeWithClock(10);
    for (let i = 0; i < 10; i++) await store.claim(`done-${i}`, 1000).then(() => store.complete(`done-${i}`, 60_000));
    for (let i = 0; i < 10; i++) expect(await store.claim(`running-${i}`, 1000, `running-${i}`)).toBe('claimed');
    await expect(store.claim('one too many', 1000)).rejects.toThrow('MemoryReplayStore is full: 10 deliveries (maxEntries) are being handled at once');
    expect(store.size).toBe(20);
    for (let i = 0; i < 10; i++) expect(await store.claim(`running-${i}`, 1000, 'retry')).toBe('in_flight');
    expect(await store.claim('done-0', 1000)).toBe('done'); // the claims took no handled key's place
    await store.complete('running-0', 60_000); // done-0, the oldest, makes room for it
    expect(await store.claim('one too many', 1000)).toBe('claimed'); // running-0's claim freed a place
    clock.now += 1001; // every claim lapses, as when their process died: the full store forgets them
    expect(await store.claim('after the lapse', 1000)).toBe('claimed');
    expect(store.size).toBe(11); // ten handled keys, and the one claim
    expect(await store.claim('done-1', 1000)).toBe('done');
  });
});

describe('MemoryReplayStore eviction with released and re-claimed keys', () => {
  it('keeps a released and re-claimed key claimed however many handled keys are forgotten meanwhile', async () => {
    const { store } = storeWithClock(3);
    await store.claim('a', 1000);
    await store.release('a');
    await store.claim('b', 1000);
    await store.claim('a', 1000);
    for (const key of ['w', 'x', 'y', 'z']) await store.complete(key, 60_000);
    expect(await store.claim('a', 1000)).toBe('in_flight');
    expect(await store.claim('b', 1000)).toBe('in_flight');
    expect(await store.claim('y', 1000)).toBe('done');
    expect(await store.claim('z', 1000)).toBe('done');
    expect(await store.claim('w', 1000)).toBe('claimed'); // the oldest, forgotten when z was handled
  });

  it('forgets handled keys in the order they were completed', async () => {
    const { store } = storeWithClock(2);
    await store.claim('a', 1000);
    await store.claim('b', 1000);
    await store.complete('b', 60_000);
    await store.complete('a', 60_000);
    await store.complete('c', 60_000); // b, completed first, makes room
    expect(await store.claim('a', 1000)).toBe('done');
    expect(await store.claim('b', 1000)).toBe('claimed');
  });

  it('completes a claimed key while another key completed in the meantime fills the only room', async () => {
    const { store } = storeWithClock(1);
    expect(await store.claim('a', 1000)).toBe('claimed');
    await store.complete('x', 60_000); // recorded without a claim, as after a lapse
    await store.complete('a', 60_000); // x, the oldest handled key, makes room
    expect(await store.claim('a', 1000)).toBe('done');
    expect(await store.claim('x', 1000)).toBe('claimed');
  });

  it('keeps a key being handled as in flight while other keys complete past maxEntries', async () => {
    const { store } = storeWithClock(3);
    await store.claim('a', 1000);
    await store.claim('b', 1000);
    await store.claim('c', 1000);
    for (const key of ['a', 'b', 'x', 'y']) await store.complete(key, 60_000);
    expect(await store.claim('c', 1000)).toBe('in_flight');
  });
});

describe('MemoryReplayStore with ordering, when full', () => {
  const order = (resource: string, position: number) => ({ resource, position });

  it('keeps at most maxEntries applied positions, the oldest forgotten first, even while the oldest resources are held', async () => {
    const { store } = storeWithClock(100);
    // The turns of 32 resources held by slow deliveries, taken before anything else.
    for (let i = 0; i < 32; i++) expect(await store.claimInOrder(`slow-${i}`, order(`busy-${i}`, 1), 60_000, `slow-${i}`)).toBe('claimed');
    await store.claimInOrder('early', order('early', 10), 60_000, 'early');
    await store.completeInOrder('early', order('early', 10), 60_000, 60_000, 'early');
    for (let i = 0; i < 5000; i++) {
      await store.claimInOrder(`k-${i}`, order(`r-${i}`, 1), 60_000, `k-${i}`);
      await store.completeInOrder(`k-${i}`, order(`r-${i}`, 1), 60_000, 60_000, `k-${i}`);
    }
    // Forgotten to make room: an older event of that resource is no longer judged stale.
    expect(await store.claimInOrder('early-older', order('early', 5), 60_000, 'late')).toBe('claimed');
    expect(await store.claimInOrder('recent-older', order('r-4999', 0), 60_000, 'late')).toEqual({ stale: 1 });
    // The held turns are never forgotten.
    for (let i = 0; i < 32; i++) expect(await store.claimInOrder(`other-${i}`, order(`busy-${i}`, 2), 60_000, `other-${i}`)).toBe('resource_in_flight');
    // What is kept of the resources, by the store's own counts: what the docs promise of memory.
    const kept = store as unknown as { applied: { size: number }; turns: { size: number } };
    expect(kept.applied.size).toBe(100);
    expect(kept.turns.size).toBe(33); // the 32 busy ones and early-older's
  });

  it('keeps maxEntries applied positions when a resource already kept records a later one', async () => {
    const { store } = storeWithClock(2);
    for (const [key, resource, position] of [['a5', 'A', 5], ['b5', 'B', 5], ['b6', 'B', 6]] as const) {
      await store.claimInOrder(key, order(resource, position), 60_000, key);
      await store.completeInOrder(key, order(resource, position), 60_000, 60_000, key);
    }
    expect(await store.claimInOrder('a1', order('A', 1), 60_000, 'a1')).toEqual({ stale: 5 });
  });

  it('never forgets a held turn to make room: with maxEntries of them held, another resource is refused', async () => {
    const { store } = storeWithClock(10);
    for (let i = 0; i < 10; i++) expect(await store.claimInOrder(`slow-${i}`, order(`busy-${i}`, 1), 60_000, `slow-${i}`)).toBe('claimed');
    for (let i = 0; i < 10; i++) expect(await store.claimInOrder(`other-${i}`, order(`busy-${i}`, 2), 60_000, `other-${i}`)).toBe('resource_in_flight');
    await expect(store.claimInOrder('new', order('idle', 1), 60_000, 'new')).rejects.toThrow('MemoryReplayStore is full');
    await store.completeInOrder('slow-0', order('busy-0', 1), 60_000, 60_000, 'slow-0');
    expect(await store.claimInOrder('new', order('idle', 1), 60_000, 'new')).toBe('claimed');
  });

  it('forgets turns nobody settled once they lapse, and frees a lapsed turn at once for another event', async () => {
    const { store, clock } = storeWithClock(10);
    const kept = store as unknown as { turns: { size: number } };
    let most = 0;
    for (let i = 0; i < 1000; i++) {
      expect(await store.claimInOrder(`abandoned-${i}`, order(`gone-${i}`, 1), 1000, `abandoned-${i}`)).toBe('claimed');
      clock.now += 1001;
      most = Math.max(most, kept.turns.size);
    }
    expect(most).toBeLessThanOrEqual(11); // forgotten once maxEntries are held
    expect(store.size).toBeLessThanOrEqual(10);
    expect(await store.claimInOrder('next', order('gone-999', 2), 1000, 'next')).toBe('claimed');
  });

  it('forgets a lapsed turn even when the event that finds it is stale, so its old holder cannot renew it', async () => {
    const { store, clock } = storeWithClock();
    await store.claimInOrder('new', order('res', 5), 1000, 'applier');
    await store.completeInOrder('new', order('res', 5), 60_000, 60_000, 'applier');
    await store.claimInOrder('k', order('res', 6), 1000, 'holder');
    clock.now += 1001; // the holder's turn lapses
    expect(await store.claimInOrder('old', order('res', 1), 1000, 'old')).toEqual({ stale: 5 });
    expect(await store.renewInOrder('k', order('res', 6), 1000, 'holder')).toBe(false); // its turn is gone, though its key's claim was never looked at
    expect(await store.claimInOrder('k2', order('res', 7), 1000, 'another')).toBe('claimed');
  });

  it('reports a turn taken by another event of the resource after it lapsed as lost, though its own claim was never looked at', async () => {
    const { store, clock } = storeWithClock();
    await store.claimInOrder('a', order('res', 1), 1000, 'first');
    clock.now += 1001; // the first event's claim and turn lapse
    expect(await store.claimInOrder('b', order('res', 2), 1000, 'second')).toBe('claimed');
    // Both now run at once: the renewal must say so, so that it is logged, as on Redis.
    expect(await store.renewInOrder('a', order('res', 1), 1000, 'first')).toBe(false);
    expect(await store.claimInOrder('c', order('res', 3), 1000, 'third')).toBe('resource_in_flight');
  });

  it('renews the turn with the claim, so the resource stays busy past the TTL while its handlers run', async () => {
    const { store, clock } = storeWithClock();
    await store.claimInOrder('k', order('res', 1), 1000, 'holder');
    clock.now += 900;
    expect(await store.renewInOrder('k', order('res', 1), 1000, 'holder')).toBe(true);
    clock.now += 900;
    expect(await store.claimInOrder('k2', order('res', 2), 1000, 'another')).toBe('resource_in_flight');
  });

  // Found in a mutation hunt: ordering.md says the applied position stays the newer one's when
  // an older event, whose turn lapsed, completes after it; no test completed them in that order.
  it('never lowers the applied position: an older event that completes after a newer one leaves the newer one applied', async () => {
    const { store, clock } = storeWithClock();
    await store.claimInOrder('accepted', order('res', 100), 1000, 'old'); // dispatch.accepted: rank 0
    clock.now += 1001; // its turn lapses while its handlers run on
    await store.claimInOrder('completed', order('res', 101), 1000, 'new'); // dispatch.completed, same second: rank 1
    await store.completeInOrder('completed', order('res', 101), 60_000, 60_000, 'new');
    await store.completeInOrder('accepted', order('res', 100), 60_000, 60_000, 'old');
    expect(await store.claimInOrder('accepted-retry', order('res', 100), 1000, 'retry')).toEqual({ stale: 101 });
  });

  // Found in a mutation hunt: the retention of an applied position is set by the event that
  // raised it, as Redis' script does (it writes only a higher position); nothing checked that
  // an event of the same position, completed later, does not keep it longer.
  it('keeps an applied position for its retention from when it was raised, not from a later event of the same position', async () => {
    const { store, clock } = storeWithClock();
    await store.claimInOrder('first', order('res', 5), 1000, 'first');
    await store.completeInOrder('first', order('res', 5), 60_000, 10_000, 'first');
    clock.now += 5000;
    expect(await store.claimInOrder('same', order('res', 5), 1000, 'same')).toBe('claimed');
    await store.completeInOrder('same', order('res', 5), 60_000, 10_000, 'same');
    clock.now += 4999;
    expect(await store.claimInOrder('older', order('res', 4), 1000, 'older')).toEqual({ stale: 5 });
    clock.now += 2;
    expect(await store.claimInOrder('older', order('res', 4), 1000, 'older')).toBe('claimed');
  });

  it('frees a lapsed turn when an earlier attempt completes, as Redis lets it expire', async () => {
    const { store, clock } = storeWithClock();
    await store.claimInOrder('k', order('res', 1), 1000, 'first');
    clock.now += 1001;
    expect(await store.claimInOrder('k', order('res', 1), 1000, 'retry')).toBe('claimed');
    clock.now += 1001;
    await store.completeInOrder('k', order('res', 1), 60_000, 60_000, 'first');
    await store.renewInOrder('k', order('res', 1), 1000, 'retry');
    expect(await store.claimInOrder('k2', order('res', 2), 1000, 'another')).toBe('claimed');
  });
});

describe('MemoryReplayStore full of handled keys, with deliveries that fail', () => {
  it('keeps every handled key when a delivery claimed in a full store is released', async () => {
    const { store } = storeWithClock(2);
    for (const key of ['a', 'b']) {
      await store.claim(key, 1000, key);
      await store.complete(key, 60_000);
    }
    for (let attempt = 1; attempt <= 3; attempt++) {
      expect(await store.claim('failing', 1000, `attempt-${attempt}`)).toBe('claimed');
      await store.release('failing', `attempt-${attempt}`);
    }
    expect(await store.claim('a', 1000, 'replay')).toBe('done');
    expect(await store.claim('b', 1000, 'replay')).toBe('done');
    expect(store.size).toBe(2);
  });

  it('keeps every handled key when an ordered delivery claimed in a full store is released', async () => {
    const { store } = storeWithClock(2);
    for (const key of ['a', 'b']) {
      await store.claim(key, 1000, key);
      await store.complete(key, 60_000);
    }
    const order = { resource: 'dsp_1', position: 1 };
    expect(await store.claimInOrder('failing', order, 1000, 'first')).toBe('claimed');
    await store.releaseInOrder('failing', order, 'first');
    expect(await store.claim('a', 1000, 'replay')).toBe('done');
    expect(await store.claim('b', 1000, 'replay')).toBe('done');
  });

  it('answers a handled key done while a claim made in the full store runs, and forgets the oldest once that claim is handled', async () => {
    const { store } = storeWithClock(2);
    for (const key of ['a', 'b']) {
      await store.claim(key, 1000, key);
      await store.complete(key, 60_000);
    }
    expect(await store.claim('slow', 1000, 'slow')).toBe('claimed');
    expect(await store.claim('a', 1000, 'replay')).toBe('done');
    expect(store.size).toBe(3); // the two handled keys, and the claim beside them
    await store.complete('slow', 60_000);
    expect(store.size).toBe(2);
    expect(await store.claim('slow', 1000, 'replay')).toBe('done');
    expect(await store.claim('b', 1000, 'replay')).toBe('done');
    expect(await store.claim('a', 1000, 'replay')).toBe('claimed'); // the oldest, forgotten for slow
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
