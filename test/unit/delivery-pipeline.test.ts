import { MemoryReplayStore, MitpoWebhooks, type ReplayStore, type WebhookLogger } from '../../src';
import { RedisReplayStore } from '../../src/redis';
import { signedDelivery } from '../../src/testing';
import { deferred, SECRET } from '../helpers/recorder';

function delivery(data?: Record<string, unknown>) {
  const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET, ...(data ? { data } : {}) } as never);
  return { rawBody: body, headers };
}

function recordingLogger() {
  const records: Array<{ level: string; record: Record<string, unknown>; message: string }> = [];
  const at = (level: string) => (record: object, message: string) =>
    void records.push({ level, record: record as Record<string, unknown>, message });
  const logger: WebhookLogger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  return { logger, records };
}

describe('the deliveryKey option', () => {
  it('replaces the replay key, so retries that differ byte-wise are still one delivery', async () => {
    const webhooks = new MitpoWebhooks({
      secret: SECRET,
      deliveryKey: (event) => `${event.event}:${String((event.data as { dispatch_id?: unknown }).dispatch_id)}`,
    });
    const keys: string[] = [];
    webhooks.onAny((_event, ctx) => void keys.push(ctx.deliveryKey));
    const data = { dispatch_id: 'dsp_same', channel: 'meta_ads', status: 'completed' };
    expect((await webhooks.receive(delivery(data))).body).toEqual({ success: true });
    // Same dispatch, different bytes (a field MITPO added on the retry).
    expect((await webhooks.receive(delivery({ ...data, retried: true }))).body).toEqual({ success: true, duplicate: true });
    expect(keys).toEqual(['dispatch.completed:dsp_same']);
  });

  it.each([
    ['an empty string', () => ''],
    ['a number', () => 42],
    ['a throw', () => {
      throw new Error('no id');
    }],
  ])('answers 500 internal_error and runs no handler when it returns %s', async (_what, deliveryKey) => {
    const { logger, records } = recordingLogger();
    const webhooks = new MitpoWebhooks({ secret: SECRET, deliveryKey: deliveryKey as never, logger });
    const ran = jest.fn();
    webhooks.onAny(ran);
    const reply = await webhooks.receive(delivery());
    expect(reply).toMatchObject({ status: 500, body: { error: { code: 'internal_error' } } });
    expect(ran).not.toHaveBeenCalled();
    expect(records).toEqual([expect.objectContaining({ level: 'error', record: expect.objectContaining({ code: 'internal_error' }) })]);
  });

  // Found in a mutation hunt: no record was checked with a key longer than the default's 64
  // characters, so cutting keys of a hundred-odd characters short went unnoticed.
  it('is logged whole up to 200 characters, and cut short past that', async () => {
    const { logger, records } = recordingLogger();
    let key = '';
    const webhooks = new MitpoWebhooks({ secret: SECRET, deliveryKey: () => key, logger });
    webhooks.onAny(() => {
      throw new Error('handler down');
    });
    for (key of [`dispatch.completed:${'d'.repeat(181)}`, 'k'.repeat(1000)]) expect((await webhooks.receive(delivery())).status).toBe(500);
    expect(records.map(({ record }) => record.deliveryKey)).toEqual([`dispatch.completed:${'d'.repeat(181)}`, `${'k'.repeat(200)}…`]);
  });

  it('must be a function', () => {
    expect(() => new MitpoWebhooks({ secret: SECRET, deliveryKey: 'dispatch_id' as never })).toThrow(/deliveryKey must be a function/);
  });
});

describe('stores', () => {
  it('work with a custom store that has only claim, complete and release', async () => {
    const keys = new Map<string, string>();
    const store: ReplayStore = {
      async claim(key) {
        const state = keys.get(key);
        if (state !== undefined) return state === 'done' ? 'done' : 'in_flight';
        keys.set(key, 'in_flight');
        return 'claimed';
      },
      async complete(key) {
        keys.set(key, 'done');
      },
      async release(key) {
        keys.delete(key);
      },
    };
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: store });
    let fail = true;
    webhooks.onAny(() => {
      if (fail) throw new Error('first attempt fails');
    });
    const one = delivery();
    expect((await webhooks.receive(one)).status).toBe(500);
    fail = false;
    expect((await webhooks.receive(one)).body).toEqual({ success: true });
    expect((await webhooks.receive(one)).body).toEqual({ success: true, duplicate: true });
  });

  it('answer 503 to a claim() that answers something else', async () => {
    const store = { claim: async () => 'yes', complete: async () => {}, release: async () => {} };
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: store as never });
    expect((await webhooks.receive(delivery())).body).toMatchObject({ error: { code: 'replay_store_unavailable' } });
  });

  it.each([
    ['rejects', () => Promise.reject(new Error('READONLY')), 'could not renew a claim', 'replay_store_unavailable'],
    ['answers that the claim is gone', () => Promise.resolve(false), 'lost a claim', 'claim_lost'],
  ])('log an error with its code, answer unchanged, when a renewal %s', async (_what, renew, said, code) => {
    const { logger, records } = recordingLogger();
    const store = new MemoryReplayStore();
    const logged = deferred();
    store.renew = renew as never;
    const webhooks = new MitpoWebhooks({
      secret: SECRET,
      replay: store,
      inFlightTtl: 0.03,
      logger: { ...logger, error: (record, message) => (logger.error(record, message), logged.resolve()) },
    });
    webhooks.onAny(() => logged.promise);
    expect((await webhooks.receive(delivery())).status).toBe(200);
    expect(records[0]).toMatchObject({ level: 'error', message: expect.stringContaining(said), record: { code, event: 'dispatch.completed' } });
  });

  it('logs no lost claim when a renewal answers "not held" after the delivery was completed meanwhile', async () => {
    const { logger, records } = recordingLogger();
    const store = new MemoryReplayStore();
    const renewing = deferred();
    const answer = deferred<boolean>();
    store.renew = () => (renewing.resolve(), answer.promise);
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: store, inFlightTtl: 0.03, logger });
    // The handler ends once a renewal is under way, so the claim completes before the store answers it.
    webhooks.onAny(() => renewing.promise);
    expect((await webhooks.receive(delivery())).status).toBe(200);
    answer.resolve(false);
    await new Promise((resolve) => setImmediate(resolve));
    expect(records.filter((record) => record.message.includes('lost a claim'))).toEqual([]);
  });
});

describe('RedisReplayStore commands', () => {
  function fakeRedis(answer: unknown) {
    const sent: Array<Array<string | number>> = [];
    const store = new RedisReplayStore({ call: async (...args: Array<string | number>) => (sent.push(args), answer) }, { prefix: 'p:' });
    return { sent, store };
  }

  it('renews only the claim its token took, and says whether it held', async () => {
    const held = fakeRedis(1);
    expect(await held.store.renew('k', 30_000, 'tok')).toBe(true);
    expect(held.sent[0]!.slice(2)).toEqual([1, 'p:k', 30_000, 'tok']);
    expect(String(held.sent[0]![1])).toContain("'in_flight:' .. ARGV[2]");
    expect(await fakeRedis(0).store.renew('k', 30_000, 'tok')).toBe(false);
  });

  it('completes with SET done PX, and releases only a claim it can name by its token', async () => {
    const { sent, store } = fakeRedis('OK');
    await store.complete('k', 1500.2);
    await store.release('k', 'tok');
    await store.release('k');
    expect(sent).toHaveLength(2);
    expect(sent[0]).toEqual(['SET', 'p:k', 'done', 'PX', 1501]);
    expect(sent[1]!.slice(2)).toEqual([1, 'p:k', 'tok']);
  });
});
