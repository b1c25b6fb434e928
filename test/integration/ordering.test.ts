import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import Redis from 'ioredis';
import { MemoryReplayStore, MitpoWebhooks, type MitpoWebhooksOptions, type ReplayStore } from '../../src';
import { BullMQDeliveryQueue } from '../../src/bullmq';
import { RedisReplayStore } from '../../src/redis';
import { MemoryDeliveryQueue, signedDelivery } from '../../src/testing';
import { deliver } from '../helpers/deliver';
import { deferred, SECRET } from '../helpers/recorder';
import { assertRedisReachable, CLIENT_FACTORIES, describeWithRedis, REDIS_URL, waitFor, type TestClient } from '../helpers/redis';

const T0 = new Date('2026-12-01T10:00:00Z');
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);
const now = () => T0.getTime() + 60_000;

type DispatchEvent = 'dispatch.accepted' | 'dispatch.completed' | 'dispatch.failed';

/** One event of dispatch `id`, signed at T0 + `seconds`. */
function dispatchEvent(event: DispatchEvent, id: string, seconds: number, status = event.split('.')[1]!) {
  return signedDelivery({ event, secret: SECRET, timestamp: at(seconds), sentAt: new Date(now()), data: { dispatch_id: id, channel: 'email', status } });
}

/** A receiver that sets a status per dispatch from each event, as an app would, and records what was skipped. */
function statusKeeper(options: Partial<MitpoWebhooksOptions> = {}) {
  const status = new Map<string, string>();
  const applied: string[] = [];
  const stale: Array<{ event: string; latest: { timestamp: Date; rank: number } }> = [];
  const webhooks = new MitpoWebhooks({ secret: SECRET, now, ordering: true, ...options });
  webhooks.on(['dispatch.accepted', 'dispatch.completed', 'dispatch.failed'], (event) => {
    status.set(event.data.dispatch_id, event.data.status);
    applied.push(event.event);
  });
  webhooks.onStale((event, _ctx, { latest }) => stale.push({ event: event.event, latest }));
  return { webhooks, status, applied, stale };
}

describe('ordering, inline on MemoryReplayStore', () => {
  it('answers a retried dispatch.accepted that comes after dispatch.completed 200 stale, and never applies it', async () => {
    const { webhooks, status, applied, stale } = statusKeeper();
    expect((await deliver(webhooks, dispatchEvent('dispatch.completed', 'd1', 10))).body).toEqual({ success: true });
    const late = await deliver(webhooks, dispatchEvent('dispatch.accepted', 'd1', 5));
    expect(late).toEqual({ status: 200, body: { success: true, stale: true } });
    expect(status.get('d1')).toBe('completed');
    expect(applied).toEqual(['dispatch.completed']);
    expect(stale).toEqual([{ event: 'dispatch.accepted', latest: { timestamp: at(10), rank: 1 } }]);
  });

  it('applies events of one resource that arrive in order, and other resources independently', async () => {
    const { webhooks, status, applied } = statusKeeper();
    expect((await deliver(webhooks, dispatchEvent('dispatch.accepted', 'd1', 1))).body).toEqual({ success: true });
    expect((await deliver(webhooks, dispatchEvent('dispatch.completed', 'd2', 9))).body).toEqual({ success: true });
    expect((await deliver(webhooks, dispatchEvent('dispatch.accepted', 'd2', 2))).body).toEqual({ success: true, stale: true });
    expect((await deliver(webhooks, dispatchEvent('dispatch.failed', 'd1', 3))).body).toEqual({ success: true });
    expect(Object.fromEntries(status)).toEqual({ d1: 'failed', d2: 'completed' });
    expect(applied).toEqual(['dispatch.accepted', 'dispatch.completed', 'dispatch.failed']);
  });

  it('ranks a dispatch outcome after its acceptance within one timestamp, and never calls equal positions stale', async () => {
    const { webhooks, status } = statusKeeper();
    expect((await deliver(webhooks, dispatchEvent('dispatch.completed', 'd1', 7))).body).toEqual({ success: true });
    expect((await deliver(webhooks, dispatchEvent('dispatch.accepted', 'd1', 7))).body).toEqual({ success: true, stale: true });
    // Same event, same second, other bytes (a field MITPO added): not stale, applied.
    expect((await deliver(webhooks, dispatchEvent('dispatch.completed', 'd1', 7, 'completed-again'))).body).toEqual({ success: true });
    expect(status.get('d1')).toBe('completed-again');
    // In order within one second: both applied.
    expect((await deliver(webhooks, dispatchEvent('dispatch.accepted', 'd2', 7))).body).toEqual({ success: true });
    expect((await deliver(webhooks, dispatchEvent('dispatch.completed', 'd2', 7))).body).toEqual({ success: true });
    expect(status.get('d2')).toBe('completed');
  });

  it('answers 409 resource_in_flight to a second event of a resource whose first is being handled, and takes its retry after', async () => {
    const hold = deferred();
    const { webhooks, status } = statusKeeper();
    let overlapping = 0;
    let most = 0;
    webhooks.on('dispatch.accepted', async (event) => {
      if (event.data.dispatch_id !== 'd1') return;
      overlapping += 1;
      most = Math.max(most, overlapping);
      await hold.promise;
      overlapping -= 1;
    });
    const first = deliver(webhooks, dispatchEvent('dispatch.accepted', 'd1', 1));
    await waitFor(() => overlapping === 1);
    const completed = dispatchEvent('dispatch.completed', 'd1', 2);
    const busy = await deliver(webhooks, completed);
    expect(busy.status).toBe(409);
    expect(busy.body).toMatchObject({ success: false, error: { code: 'resource_in_flight' } });
    // Another resource is not held up.
    expect((await deliver(webhooks, dispatchEvent('dispatch.accepted', 'd2', 1))).status).toBe(200);
    hold.resolve();
    expect((await first).body).toEqual({ success: true });
    expect((await deliver(webhooks, completed)).body).toEqual({ success: true });
    expect(status.get('d1')).toBe('completed');
    expect(most).toBe(1);
  });

  it('records nothing for a failed event: its resource is free at once, and its retry is not stale', async () => {
    const { webhooks, status } = statusKeeper();
    let fail = true;
    webhooks.on('dispatch.completed', () => {
      if (fail) throw new Error('database down');
    });
    const completed = dispatchEvent('dispatch.completed', 'd1', 10);
    expect((await deliver(webhooks, completed)).status).toBe(500);
    // The failed event was not applied, so an older one is not stale.
    expect((await deliver(webhooks, dispatchEvent('dispatch.accepted', 'd1', 5))).body).toEqual({ success: true });
    fail = false;
    expect((await deliver(webhooks, completed)).body).toEqual({ success: true });
    expect(status.get('d1')).toBe('completed');
  });

  it('takes the resource from the key option; an event without one is never stale', async () => {
    const { webhooks, applied } = statusKeeper({ ordering: { key: (event) => (event.event === 'dispatch.failed' ? undefined : 'everything') } });
    expect((await deliver(webhooks, dispatchEvent('dispatch.completed', 'a', 10))).body).toEqual({ success: true });
    expect((await deliver(webhooks, dispatchEvent('dispatch.accepted', 'b', 5))).body).toEqual({ success: true, stale: true });
    expect((await deliver(webhooks, dispatchEvent('dispatch.failed', 'c', 1))).body).toEqual({ success: true });
    expect(applied).toEqual(['dispatch.completed', 'dispatch.failed']);
  });

  // Found in a mutation hunt: a key of '' would order every such event as one resource.
  it('answers 500 internal_error, running no handler, when the key option returns an empty string', async () => {
    const logged: unknown[] = [];
    const error = (record: object) => void logged.push((record as { err?: Error }).err?.message);
    const quiet = () => undefined;
    const { webhooks, applied } = statusKeeper({ ordering: { key: () => '' }, logger: { debug: quiet, info: quiet, warn: quiet, error } });
    const reply = await deliver(webhooks, dispatchEvent('dispatch.completed', 'd1', 10));
    expect(reply).toMatchObject({ status: 500, body: { error: { code: 'internal_error' } } });
    expect(applied).toEqual([]);
    expect(logged).toEqual([expect.stringContaining('the ordering key returned an empty string')]);
  });

  it('logs a stale event at info and counts no failure', async () => {
    const records: Array<[string, Record<string, unknown>]> = [];
    const log = (level: string) => (record: object) => records.push([level, record as Record<string, unknown>]);
    const failures: unknown[] = [];
    const { webhooks } = statusKeeper({ logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') } });
    webhooks.onFailure((error) => failures.push(error));
    await deliver(webhooks, dispatchEvent('dispatch.completed', 'd1', 10));
    await deliver(webhooks, dispatchEvent('dispatch.accepted', 'd1', 5));
    expect(records).toEqual([['info', expect.objectContaining({ code: 'stale', event: 'dispatch.accepted', latest: { timestamp: at(10).toISOString(), rank: 1 } })]]);
    expect(failures).toEqual([]);
  });

  it('is a TypeError with a store that does not keep order, with replay: false, or with a bad value', () => {
    const plain: ReplayStore = { claim: () => Promise.resolve('claimed'), complete: () => Promise.resolve(), release: () => Promise.resolve() };
    expect(() => new MitpoWebhooks({ secret: SECRET, ordering: true, replay: plain })).toThrow(/ordering needs a replay store that keeps order/);
    expect(() => new MitpoWebhooks({ secret: SECRET, ordering: true, replay: false })).toThrow(/cannot go with replay: false/);
    expect(() => new MitpoWebhooks({ secret: SECRET, ordering: 'yes' as never })).toThrow(TypeError);
    expect(() => new MitpoWebhooks({ secret: SECRET, ordering: true, replay: new MemoryReplayStore() })).not.toThrow();
  });
});

/** What every store that keeps order must do, called directly. */
async function storeKeepsOrder(store: ReplayStore, prefix: string) {
  const order = { resource: `${prefix}dispatch:d1`, position: 100 };
  expect(await store.claimInOrder!(`${prefix}k1`, order, 60_000, 't1')).toBe('claimed');
  expect(await store.renewInOrder!(`${prefix}k1`, order, 60_000, 't1')).toBe(true);
  expect(await store.renewInOrder!(`${prefix}k1`, order, 60_000, 'someone-else')).toBe(false);
  expect(await store.claimInOrder!(`${prefix}k2`, { ...order, position: 101 }, 60_000, 't2')).toBe('resource_in_flight');
  await store.releaseInOrder!(`${prefix}k1`, order, 't1');
  expect(await store.claimInOrder!(`${prefix}k2`, { ...order, position: 101 }, 60_000, 't2')).toBe('claimed');
  await store.completeInOrder!(`${prefix}k2`, { ...order, position: 101 }, 60_000, 60_000, 't2');
  expect(await store.claimInOrder!(`${prefix}k2`, { ...order, position: 101 }, 60_000, 't3')).toBe('done');
  expect(await store.claimInOrder!(`${prefix}k1`, order, 60_000, 't4')).toEqual({ stale: 101 });
  expect(await store.claimInOrder!(`${prefix}k3`, { ...order, position: 101 }, 60_000, 't5')).toBe('claimed');
}

describe('the ordering methods of MemoryReplayStore', () => {
  it('claim, renew, release and complete a resource with its key', () => storeKeepsOrder(new MemoryReplayStore(), ''));

  it('forgets an applied position after its retention', async () => {
    let clock = 0;
    const store = new MemoryReplayStore({ now: () => clock });
    const order = { resource: 'dispatch:d1', position: 100 };
    expect(await store.claimInOrder('k1', order, 1000, 't1')).toBe('claimed');
    await store.completeInOrder('k1', order, 5000, 5000, 't1');
    expect(await store.claimInOrder('k0', { ...order, position: 50 }, 1000, 't2')).toEqual({ stale: 100 });
    clock = 6000;
    expect(await store.claimInOrder('k0', { ...order, position: 50 }, 1000, 't2')).toBe('claimed');
  });
});

// Found in review: a full store evicted the resource a running claim held, so a second event of it ran alongside.
it('never evicts a resource a claim holds when MemoryReplayStore is full', async () => {
  const store = new MemoryReplayStore({ maxEntries: 3 });
  const x = { resource: 'dispatch:x', position: 10 };
  expect(await store.claimInOrder('kx1', x, 60_000, 'tx')).toBe('claimed');
  for (const other of ['y', 'z', 'w']) {
    expect(await store.claimInOrder(`k${other}`, { resource: `dispatch:${other}`, position: 10 }, 60_000, `t${other}`)).toBe('claimed');
    await store.completeInOrder(`k${other}`, { resource: `dispatch:${other}`, position: 10 }, 60_000, 60_000, `t${other}`);
  }
  expect(await store.claimInOrder('kx2', { ...x, position: 11 }, 60_000, 'tx2')).toBe('resource_in_flight');
});

it('answers 503 replay_store_unavailable with ordering when Redis cannot be reached, and runs no handler', async () => {
  // Nothing listens on port 1: every command fails at once.
  const client = new Redis('redis://127.0.0.1:1', { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    const { webhooks, applied } = statusKeeper({ replay: new RedisReplayStore(client) });
    const answer = await deliver(webhooks, dispatchEvent('dispatch.completed', 'd1', 10));
    expect(answer.status).toBe(503);
    expect(answer.body).toMatchObject({ error: { code: 'replay_store_unavailable' } });
    expect(applied).toEqual([]);
  } finally {
    client.disconnect();
  }
});

describe('ordering, in MemoryDeliveryQueue workers', () => {
  it('skips a stale event in the worker: no handler, onStale told, the job done', async () => {
    const queue = new MemoryDeliveryQueue({ backoff: 0.01 });
    const { webhooks, status, applied, stale } = statusKeeper({ queue });
    webhooks.startWorker();
    await deliver(webhooks, dispatchEvent('dispatch.completed', 'd1', 10));
    await deliver(webhooks, dispatchEvent('dispatch.accepted', 'd1', 5));
    await queue.drain();
    expect(status.get('d1')).toBe('completed');
    expect(applied).toEqual(['dispatch.completed']);
    expect(stale.map((s) => s.event)).toEqual(['dispatch.accepted']);
    expect(queue.deadLetters()).toEqual([]);
  });

  it('retries a run whose resource key throws, then tells onDeadLetter of it once, as of a failed handler', async () => {
    const queue = new MemoryDeliveryQueue({ attempts: 2, backoff: 0 });
    const webhooks = new MitpoWebhooks({
      secret: SECRET,
      queue,
      ordering: {
        key: () => {
          throw new Error('key bug');
        },
      },
    });
    const handler = jest.fn();
    webhooks.onAny(handler);
    const told: string[] = [];
    webhooks.onDeadLetter((event, _ctx, error) => void told.push(`${event?.event}: ${error.message}`));
    webhooks.startWorker();
    expect((await deliver(webhooks, signedDelivery({ event: 'dispatch.completed', secret: SECRET }))).status).toBe(200);
    await queue.drain();
    expect(handler).not.toHaveBeenCalled();
    expect(told).toEqual(['dispatch.completed: key bug']);
    expect(queue.deadLetters()).toHaveLength(1);
  });
});

const describeRedis = describeWithRedis('the ordering tests on Redis');

describeRedis('ordering across two instances on one Redis (RedisReplayStore)', () => {
  const clients: TestClient[] = [];
  let prefix: string;
  beforeAll(() => assertRedisReachable());
  beforeEach(() => {
    prefix = `mitpo-order-test:${randomUUID()}:`;
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
  });

  async function instance() {
    const client = await CLIENT_FACTORIES.ioredis(REDIS_URL!);
    clients.push(client);
    return statusKeeper({ replay: new RedisReplayStore(client.client, { prefix }) });
  }

  it('claims, renews, releases and completes a resource with its key, in one script each', async () => {
    const client = await CLIENT_FACTORIES.ioredis(REDIS_URL!);
    clients.push(client);
    await storeKeepsOrder(new RedisReplayStore(client.client, { prefix }), '');
  });

  it('never applies on one instance an event older than one the other applied', async () => {
    const a = await instance();
    const b = await instance();
    expect((await deliver(a.webhooks, dispatchEvent('dispatch.completed', 'd1', 10))).body).toEqual({ success: true });
    expect((await deliver(b.webhooks, dispatchEvent('dispatch.accepted', 'd1', 5))).body).toEqual({ success: true, stale: true });
    expect(b.applied).toEqual([]);
    expect(b.stale).toEqual([{ event: 'dispatch.accepted', latest: { timestamp: at(10), rank: 1 } }]);
  });

  it('never runs two events of one dispatch at once across instances: the second is 409 resource_in_flight', async () => {
    const a = await instance();
    const b = await instance();
    const hold = deferred();
    a.webhooks.on('dispatch.accepted', () => hold.promise);
    let started = false;
    a.webhooks.onAny(() => {
      started = true;
    });
    const first = deliver(a.webhooks, dispatchEvent('dispatch.accepted', 'd1', 1));
    await waitFor(() => started);
    const completed = dispatchEvent('dispatch.completed', 'd1', 2);
    const busy = await deliver(b.webhooks, completed);
    expect(busy.body).toMatchObject({ error: { code: 'resource_in_flight' } });
    hold.resolve();
    expect((await first).body).toEqual({ success: true });
    expect((await deliver(b.webhooks, completed)).body).toEqual({ success: true });
    expect(b.status.get('d1')).toBe('completed');
  });

  it('of many events of one dispatch sent to two instances at once, runs one at a time and applies none that is stale', async () => {
    const a = await instance();
    const b = await instance();
    let running = 0;
    let most = 0;
    let latestApplied = -1;
    let staleApplied = 0;
    for (const { webhooks } of [a, b]) {
      webhooks.onAny(async (event) => {
        running += 1;
        most = Math.max(most, running);
        const position = Date.parse(event.timestamp);
        if (position < latestApplied) staleApplied += 1;
        latestApplied = Math.max(latestApplied, position);
        await new Promise((resolve) => setImmediate(resolve));
        running -= 1;
      });
    }
    const events = Array.from({ length: 30 }, (_, i) => dispatchEvent(i % 2 === 0 ? 'dispatch.accepted' : 'dispatch.completed', 'd1', (i * 7) % 30));
    // MITPO retries what is refused 409; here, until each is answered 200.
    const settle = async (webhooks: MitpoWebhooks, delivery: ReturnType<typeof dispatchEvent>) => {
      for (;;) {
        const answer = await deliver(webhooks, delivery);
        if (answer.status === 200) return answer.body;
        expect(answer.body).toMatchObject({ error: { code: expect.stringMatching(/^(resource_in_flight|in_flight)$/) } });
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    await Promise.all(events.map((delivery, i) => settle(i % 2 === 0 ? a.webhooks : b.webhooks, delivery)));
    expect(most).toBe(1);
    expect(staleApplied).toBe(0);
  });
});

describeRedis('ordering in BullMQ workers', () => {
  let name: string;
  const opened: MitpoWebhooks[] = [];
  beforeAll(() => assertRedisReachable());
  beforeEach(() => {
    name = `mitpo-order-test-${randomUUID()}`;
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((webhooks) => webhooks.close({ timeout: 1 })));
    const inspect = new Queue(name, { connection: { url: REDIS_URL! } });
    await inspect.obliterate({ force: true }).catch(() => undefined);
    await inspect.close();
  });

  function queuedKeeper() {
    const queue = new BullMQDeliveryQueue({ connection: { url: REDIS_URL! }, name, backoff: 0.05, lockDuration: 2 });
    const keeper = statusKeeper({ queue });
    opened.push(keeper.webhooks);
    return keeper;
  }

  it('two workers on one queue: events of one dispatch never overlap, and a stale one is never applied', async () => {
    const receiver = queuedKeeper();
    const workers = [queuedKeeper(), queuedKeeper()];
    const running = new Map<string, number>();
    let overlaps = 0;
    const appliedOrder: string[] = [];
    const stale: string[] = [];
    for (const { webhooks } of workers) {
      webhooks.on(['dispatch.accepted', 'dispatch.completed'], async (event) => {
        const id = event.data.dispatch_id;
        running.set(id, (running.get(id) ?? 0) + 1);
        if (running.get(id)! > 1) overlaps += 1;
        await new Promise((resolve) => setTimeout(resolve, 20));
        appliedOrder.push(`${id}:${event.event}`);
        running.set(id, running.get(id)! - 1);
      });
      webhooks.onStale((event) => stale.push(`${(event.data as { dispatch_id: string }).dispatch_id}:${event.event}`));
      webhooks.startWorker({ concurrency: 4 });
    }
    // d1 and d2: completed queued first, accepted after (a retry that came late); d3 in order.
    for (const [kind, id, second] of [
      ['dispatch.completed', 'd1', 10],
      ['dispatch.completed', 'd2', 10],
      ['dispatch.accepted', 'd1', 5],
      ['dispatch.accepted', 'd3', 5],
      ['dispatch.accepted', 'd2', 5],
      ['dispatch.completed', 'd3', 10],
    ] as const) {
      expect((await deliver(receiver.webhooks, dispatchEvent(kind, id, second))).body).toEqual({ success: true, queued: true });
    }
    await waitFor(() => appliedOrder.length + stale.length === 6, 20_000);
    expect(overlaps).toBe(0);
    for (const id of ['d1', 'd2', 'd3']) {
      const applied = appliedOrder.filter((entry) => entry.startsWith(`${id}:`));
      // Each dispatch ends completed: its acceptance was applied before, or skipped as stale, never after.
      expect(applied.at(-1)).toBe(`${id}:dispatch.completed`);
      expect([...applied, ...stale.filter((entry) => entry.startsWith(`${id}:`))].sort()).toEqual([`${id}:dispatch.accepted`, `${id}:dispatch.completed`]);
    }
  });

  // Found in review: a deferred job stayed among the worker's unfinished ones, so close() waited its whole timeout.
  it('closes a worker that put a run off at once, not after its timeout', async () => {
    const receiver = queuedKeeper();
    const worker = queuedKeeper();
    const holder = await CLIENT_FACTORIES.ioredis(REDIS_URL!);
    try {
      // Another worker holds dispatch d9's turn.
      await holder.raw('SET', `bull:${name}:resource:dispatch:d9:holder`, 'another-worker', 'PX', '60000');
      worker.webhooks.startWorker();
      await deliver(receiver.webhooks, dispatchEvent('dispatch.completed', 'd9', 1));
      const inspect = new Queue(name, { connection: { url: REDIS_URL! } });
      try {
        await waitFor(async () => (await inspect.getDelayedCount()) > 0);
      } finally {
        await inspect.close();
      }
      // With the deferred job counted as unfinished, this waited 30 s (past the test's timeout).
      await worker.webhooks.close({ timeout: 30 });
      expect(worker.applied).toEqual([]);
    } finally {
      await holder.close();
    }
  });

  it('delays a second event of a dispatch until the first settles, without counting it as an attempt', async () => {
    const receiver = queuedKeeper();
    const worker = queuedKeeper();
    const hold = deferred();
    const seen: Array<{ event: string; attempt: number; whileHeld: boolean }> = [];
    let held = false;
    worker.webhooks.on(['dispatch.accepted', 'dispatch.completed'], async (event, ctx) => {
      seen.push({ event: event.event, attempt: ctx.attempt, whileHeld: held });
      if (event.event === 'dispatch.accepted') {
        held = true;
        await hold.promise;
        held = false;
      }
    });
    worker.webhooks.startWorker({ concurrency: 2 });
    await deliver(receiver.webhooks, dispatchEvent('dispatch.accepted', 'd1', 1));
    await waitFor(() => held);
    await deliver(receiver.webhooks, dispatchEvent('dispatch.completed', 'd1', 2));
    // Give the worker time to take the second job and put it off at least once.
    const inspect = new Queue(name, { connection: { url: REDIS_URL! } });
    try {
      await waitFor(async () => (await inspect.getDelayedCount()) > 0);
    } finally {
      await inspect.close();
    }
    hold.resolve();
    await waitFor(() => seen.length === 2, 10_000);
    expect(seen).toEqual([
      { event: 'dispatch.accepted', attempt: 1, whileHeld: false },
      { event: 'dispatch.completed', attempt: 1, whileHeld: false },
    ]);
    expect(worker.status.get('d1')).toBe('completed');
  });
});
