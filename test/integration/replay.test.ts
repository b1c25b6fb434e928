import { MemoryReplayStore, MitpoWebhooks, type ReplayStore } from '../../src';
import { signedDelivery } from '../../src/testing';
import { nowInSeconds } from '../helpers/clock';
import { deliver } from '../helpers/deliver';
import { send } from '../helpers/http-client';
import { deferred, recordingReceiver, SECRET } from '../helpers/recorder';
import { mount } from '../helpers/servers';

async function withReceiver(
  options: Parameters<typeof recordingReceiver>[0],
  run: (url: string, receiver: ReturnType<typeof recordingReceiver>) => Promise<void>,
) {
  const receiver = recordingReceiver(options);
  const server = await mount('Express 5 route', receiver.webhooks);
  try {
    await run(server.url, receiver);
  } finally {
    await server.close();
  }
}

describe('replay protection over HTTP', () => {
  it('answers a repeated delivery 200 duplicate without running the handlers again', async () => {
    await withReceiver({}, async (url, { runs }) => {
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect((await send(url, delivery)).json).toEqual({ success: true });
      expect((await send(url, delivery)).json).toEqual({ success: true, duplicate: true });
      expect((await send(url, delivery)).json).toEqual({ success: true, duplicate: true });
      expect(runs.map((r) => r.handler)).toEqual(['on(dispatch.completed)', 'onAny']);
    });
  });

  it('leaves a delivery whose handler failed retryable: the identical retry runs the handlers again', async () => {
    await withReceiver({}, async (url, { webhooks, runs }) => {
      let attempts = 0;
      webhooks.on('dispatch.failed', async () => {
        attempts += 1;
        if (attempts === 1) throw new Error('temporary outage');
      });
      const delivery = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
      const first = await send(url, delivery);
      expect(first.status).toBe(500);
      expect(first.json.error?.code).toBe('handler_failed');
      const retry = await send(url, delivery);
      expect(retry.json).toEqual({ success: true });
      expect(attempts).toBe(2);
      expect(runs.filter((r) => r.handler === 'onAny')).toHaveLength(2);
      expect((await send(url, delivery)).json).toEqual({ success: true, duplicate: true });
      expect(attempts).toBe(2);
    });
  });

  it('runs the handlers once when the same delivery arrives several times at once', async () => {
    await withReceiver({}, async (url, { webhooks }) => {
      let runsOfSlowHandler = 0;
      webhooks.on('dispatch.accepted', async () => {
        runsOfSlowHandler += 1;
        await new Promise((resolve) => setImmediate(resolve));
      });
      const delivery = signedDelivery({ event: 'dispatch.accepted', secret: SECRET });
      const replies = await Promise.all(Array.from({ length: 8 }, () => send(url, delivery)));
      expect(runsOfSlowHandler).toBe(1);
      const statuses = replies.map((r) => r.status);
      expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(1);
      // Every other copy was either in flight (409, MITPO retries) or already done (200 duplicate).
      for (const reply of replies) {
        expect(reply.status === 409 ? reply.json.error?.code : reply.json.success).toBeTruthy();
      }
    });
  });

  it('refuses a captured delivery re-sent with a forged fresh X-MITPO-Timestamp', async () => {
    // Captured three days and a minute ago, as MITPO sent it then.
    const sentThen = nowInSeconds() - 259_200 - 60;
    const captured = signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp: sentThen, sentAt: sentThen });
    const forged = { body: captured.body, headers: { ...captured.headers, 'X-MITPO-Timestamp': String(nowInSeconds()) } };

    // A receiver that never saw it (its replay store is fresh): the signed body timestamp gives it away.
    await withReceiver({}, async (url, { runs }) => {
      const reply = await send(url, forged);
      expect(reply.status).toBe(401);
      expect(reply.json.error?.code).toBe('event_too_old');
      expect(runs).toHaveLength(0);
    });

    // Captured recently instead: the body is still fresh, but the store remembers it.
    const recent = signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp: nowInSeconds() - 3000, sentAt: nowInSeconds() - 3000 });
    const store = new MemoryReplayStore();
    await withReceiver({ replay: store, tolerance: 3600 }, async (url) => {
      expect((await send(url, recent)).json).toEqual({ success: true });
    });
    await withReceiver({ replay: store }, async (url, { runs }) => {
      const reply = await send(url, { body: recent.body, headers: { ...recent.headers, 'X-MITPO-Timestamp': String(nowInSeconds()) } });
      expect(reply.json).toEqual({ success: true, duplicate: true });
      expect(runs).toHaveLength(0);
    });
  });

  it('with replay: false, runs the handlers for every copy', async () => {
    await withReceiver({ replay: false }, async (url, { runs }) => {
      const delivery = signedDelivery({ event: 'connection.active', secret: SECRET });
      expect((await send(url, delivery)).json).toEqual({ success: true });
      expect((await send(url, delivery)).json).toEqual({ success: true });
      expect(runs.filter((r) => r.handler === 'onAny')).toHaveLength(2);
    });
  });
});

/** The same signed body sent again later, as an attacker who captured it would: a fresh X-MITPO-Timestamp. */
function replayed(delivery: { body: string; headers: Record<string, string> }) {
  return { body: delivery.body, headers: { ...delivery.headers, 'X-MITPO-Timestamp': String(nowInSeconds()) } };
}

describe('replay protection when the store is full', () => {
  it('still answers duplicate to a captured paid delivery after maxEntries failing replays of another capture', async () => {
    const maxEntries = 200;
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: new MemoryReplayStore({ maxEntries }) });
    const paid = jest.fn();
    webhooks.on('dispatch.completed', paid);
    webhooks.on('dispatch.failed', () => {
      throw new Error('this event always fails');
    });
    const paidDelivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const failingCapture = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
    expect((await deliver(webhooks, paidDelivery)).status).toBe(200);
    for (let i = 0; i < maxEntries * 2; i++) {
      expect((await deliver(webhooks, replayed(failingCapture))).body).toMatchObject({ error: { code: 'handler_failed' } });
    }
    expect((await deliver(webhooks, replayed(paidDelivery))).body).toEqual({ success: true, duplicate: true });
    expect(paid).toHaveBeenCalledTimes(1);
  });

  it('runs no handled delivery again after MITPO retried a failing one into a full MemoryReplayStore', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: new MemoryReplayStore({ maxEntries: 3 }) });
    let completedRuns = 0;
    webhooks.on('dispatch.completed', async () => {
      completedRuns += 1;
    });
    webhooks.on('dispatch.failed', async () => {
      throw new Error('the app cannot handle this one yet');
    });
    const handled = [1, 2, 3].map(() => signedDelivery({ event: 'dispatch.completed', secret: SECRET }));
    for (const delivery of handled) expect((await deliver(webhooks, delivery)).status).toBe(200);
    const failing = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
    for (let retry = 0; retry < 3; retry++) expect((await deliver(webhooks, failing)).status).toBe(500);
    for (const delivery of handled) expect((await deliver(webhooks, delivery)).body).toEqual({ success: true, duplicate: true });
    expect(completedRuns).toBe(3);
  });
});

/**
 * A handler for `event` whose first run waits until `release()`; later runs
 * return at once, so a second run fails the test's count instead of hanging it.
 */
function slowFirstRun(webhooks: MitpoWebhooks, event: 'dispatch.completed' | 'dispatch.failed') {
  const released = deferred();
  const started = deferred();
  let runs = 0;
  webhooks.on(event, async () => {
    runs += 1;
    started.resolve();
    if (runs === 1) await released.promise;
  });
  return { started: started.promise, release: () => released.resolve(), runs: () => runs };
}

describe('replay protection when the store is full of handled deliveries', () => {
  it('keeps the claim of a delivery whose handler is still running, so its retry is 409 in_flight and the handler runs once', async () => {
    const maxEntries = 3;
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: new MemoryReplayStore({ maxEntries }) });
    const handler = slowFirstRun(webhooks, 'dispatch.failed');
    const slow = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
    const first = deliver(webhooks, slow);
    await handler.started;
    // More deliveries than the store holds, all handled while the slow one runs.
    for (let i = 0; i < maxEntries * 2; i++) {
      expect((await deliver(webhooks, signedDelivery({ event: 'dispatch.completed', secret: SECRET }))).status).toBe(200);
    }
    expect((await deliver(webhooks, replayed(slow))).body).toMatchObject({ error: { code: 'in_flight' } });
    handler.release();
    expect((await first).status).toBe(200);
    expect((await deliver(webhooks, replayed(slow))).body).toEqual({ success: true, duplicate: true });
    expect(handler.runs()).toBe(1);
  });

  it('answers 503 replay_store_unavailable, running nothing, when every place is a delivery being handled; the retry runs once one settles', async () => {
    const logged: string[] = [];
    const log = (record: { err?: Error }, message?: string) => logged.push(`${message ?? ''} ${String(record.err?.cause ?? record.err)}`);
    const logger = { debug: log, info: log, warn: log, error: log };
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: new MemoryReplayStore({ maxEntries: 1 }), logger });
    const handler = slowFirstRun(webhooks, 'dispatch.failed');
    const completed = jest.fn();
    webhooks.on('dispatch.completed', completed);
    const first = deliver(webhooks, signedDelivery({ event: 'dispatch.failed', secret: SECRET }));
    await handler.started;
    const other = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const refused = await deliver(webhooks, other);
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({ error: { code: 'replay_store_unavailable' } });
    expect(completed).not.toHaveBeenCalled();
    expect(logged.join('\n')).toContain('MemoryReplayStore is full: 1 deliveries (maxEntries) are being handled at once');
    handler.release();
    expect((await first).status).toBe(200);
    expect((await deliver(webhooks, replayed(other))).status).toBe(200);
    expect(completed).toHaveBeenCalledTimes(1);
  });
});

describe('the claim held while a handler runs', () => {
  afterEach(() => jest.useRealTimers());

  it('is renewed while a handler slower than inFlightTtl runs, so a retry past the TTL is 409 in_flight and it never runs twice at once', async () => {
    let clock = Date.now();
    const store = new MemoryReplayStore({ now: () => clock });
    let onRenew = () => {};
    const renew = store.renew.bind(store);
    store.renew = async (...args) => {
      const held = await renew(...args);
      onRenew();
      return held;
    };
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: store, inFlightTtl: 0.3 });
    const handler = slowFirstRun(webhooks, 'dispatch.completed');
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const first = deliver(webhooks, delivery);
    await handler.started;
    // Far past the claim's TTL by the store's clock: only a renewal after the jump keeps it.
    clock += 60_000;
    await new Promise<void>((resolve) => (onRenew = resolve));
    expect((await deliver(webhooks, replayed(delivery))).body).toMatchObject({ error: { code: 'in_flight' } });
    handler.release();
    expect((await first).status).toBe(200);
    expect(handler.runs()).toBe(1);
  });

  // Found in a mutation hunt: no test saw a released claim left on the renewal list. Renewed
  // on, it logs a lost claim every tick, and on Redis a renewal takes a released claim back,
  // so MITPO's retry of the failed delivery would be 409 in_flight.
  it('stops renewing the claim of a delivery whose handler failed, once it is released', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    const store = new MemoryReplayStore();
    const renewed: string[] = [];
    const renew = store.renew.bind(store);
    store.renew = (key, ttlMs, token) => (renewed.push(key), renew(key, ttlMs, token));
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: store, inFlightTtl: 0.03 });
    webhooks.onAny(() => {
      throw new Error('temporary outage');
    });
    expect((await deliver(webhooks, signedDelivery({ event: 'dispatch.failed', secret: SECRET }))).status).toBe(500);
    await jest.advanceTimersByTimeAsync(100); // several renewal ticks (every 10 ms)
    expect(renewed).toEqual([]);
  });

  // Found in a mutation hunt: nothing checked that the renewal's one timer stops once no claim
  // is left, without close(): where a timer cannot be unref'd (Deno's are numbers), one left
  // running would keep an idle process alive.
  it('stops its timer at the first renewal tick that finds no claim, with no close()', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    const webhooks = new MitpoWebhooks({ secret: SECRET, inFlightTtl: 0.03 });
    webhooks.onAny(() => undefined);
    expect((await deliver(webhooks, signedDelivery({ event: 'dispatch.completed', secret: SECRET }))).status).toBe(200);
    expect(jest.getTimerCount()).toBe(1); // the renewal, started with the claim
    await jest.advanceTimersByTimeAsync(10); // a third of inFlightTtl: the tick finds no claim
    expect(jest.getTimerCount()).toBe(0);
  });

  // Found in a mutation hunt: a renewal for less than inFlightTtl went unnoticed.
  it.each([
    ['renew', false],
    ['renewInOrder', true],
  ])('renews for the whole inFlightTtl each time, through %s', async (method, ordering) => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    const store = new MemoryReplayStore();
    const renewals: Array<[string, number]> = [];
    const renew = store.renew.bind(store);
    const renewInOrder = store.renewInOrder.bind(store);
    store.renew = (key, ttlMs, token) => (renewals.push(['renew', ttlMs]), renew(key, ttlMs, token));
    store.renewInOrder = (key, order, ttlMs, token) => (renewals.push(['renewInOrder', ttlMs]), renewInOrder(key, order, ttlMs, token));
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: store, inFlightTtl: 0.03, ordering });
    const handler = slowFirstRun(webhooks, 'dispatch.completed');
    const answer = deliver(webhooks, signedDelivery({ event: 'dispatch.completed', secret: SECRET }));
    await handler.started;
    jest.advanceTimersByTime(30); // three renewal ticks
    handler.release();
    expect((await answer).status).toBe(200);
    expect(renewals).toEqual([[method, 30], [method, 30], [method, 30]]);
  });

  // The renewal runs from a timer: a custom store's renew() that throws (or returns
  // no promise) must not throw out of it, which would be an uncaughtException.
  it('keeps a custom store whose renew() throws synchronously inside the pipeline (logged, never thrown out of a timer)', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    const inner = new MemoryReplayStore();
    const store: ReplayStore = {
      claim: (key, ttl, token) => inner.claim(key, ttl, token),
      complete: (key, retention) => inner.complete(key, retention),
      release: (key, token) => inner.release(key, token),
      renew: () => {
        throw new Error('client is closed');
      },
    };
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: store, inFlightTtl: 0.03 });
    const started = deferred();
    const finish = deferred();
    webhooks.onAny(async () => {
      started.resolve();
      await finish.promise;
    });
    const answer = deliver(webhooks, signedDelivery({ event: 'connection.active', secret: SECRET }));
    await started.promise;
    let thrownOutOfTimer: unknown;
    try {
      jest.advanceTimersByTime(100); // several renewal ticks (every 10 ms)
    } catch (error) {
      thrownOutOfTimer = error;
    }
    finish.resolve();
    expect((await answer).status).toBe(200);
    expect(thrownOutOfTimer).toBeUndefined();
  });
});
