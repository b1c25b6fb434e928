import { randomUUID } from 'node:crypto';
import { MitpoWebhooks, type WebhookVerificationError } from '../../src';
import { RedisReplayStore } from '../../src/redis';
import { resourceKeys } from '../../src/redis/resource-keys';
import { signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';
import { SECRET } from '../helpers/recorder';
import {
  CLIENT_FACTORIES,
  describeWithRedis,
  privateRedisServer,
  REDIS_URL,
  redisServerInstalled,
  waitFor,
  type TestClient,
} from '../helpers/redis';
import { mount, type RunningServer } from '../helpers/servers';

const describeRedis = describeWithRedis('the RedisReplayStore tests');
const CLIENTS = Object.keys(CLIENT_FACTORIES) as Array<keyof typeof CLIENT_FACTORIES>;

describeRedis.each(CLIENTS)('RedisReplayStore with %s', (library) => {
  const connect = () => CLIENT_FACTORIES[library](REDIS_URL!);
  let a: TestClient;
  let b: TestClient;
  let prefix: string;

  beforeAll(async () => {
    a = await connect();
    b = await connect();
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });
  beforeEach(() => {
    prefix = `mitpo-test:${randomUUID()}:`;
  });

  it('goes claimed → in_flight → done, keeping done for the retention', async () => {
    const store = new RedisReplayStore(a.client, { prefix });
    expect(await store.claim('k', 60_000)).toBe('claimed');
    expect(await store.claim('k', 60_000)).toBe('in_flight');
    const inFlightTtl = Number(await a.raw('PTTL', `${prefix}k`));
    expect(inFlightTtl).toBeGreaterThan(0);
    expect(inFlightTtl).toBeLessThanOrEqual(60_000);
    await store.complete('k', 3_600_000);
    expect(await store.claim('k', 60_000)).toBe('done');
    const retention = Number(await a.raw('PTTL', `${prefix}k`));
    expect(retention).toBeGreaterThan(60_000);
    expect(retention).toBeLessThanOrEqual(3_600_000);
    await store.release('k');
    expect(await store.claim('k', 60_000)).toBe('done');
  });

  it('releases an in-flight claim so it can be claimed again', async () => {
    const store = new RedisReplayStore(a.client, { prefix });
    expect(await store.claim('k', 60_000)).toBe('claimed');
    await store.release('k');
    expect(await a.raw('EXISTS', `${prefix}k`)).toBe(0);
    expect(await store.claim('k', 60_000)).toBe('claimed');
  });

  it("never releases another instance's claim", async () => {
    const mine = new RedisReplayStore(a.client, { prefix });
    const theirs = new RedisReplayStore(b.client, { prefix });
    expect(await mine.claim('k', 60_000)).toBe('claimed');
    await theirs.release('k');
    expect(await theirs.claim('k', 60_000)).toBe('in_flight');
  });

  it('lets an abandoned claim (a crashed process) expire after its TTL', async () => {
    const crashed = new RedisReplayStore(a.client, { prefix });
    const survivor = new RedisReplayStore(b.client, { prefix });
    expect(await crashed.claim('k', 50)).toBe('claimed');
    expect(await survivor.claim('k', 60_000)).toBe('in_flight');
    // Redis expires the key on its own clock; poll for it rather than guess a delay.
    await waitFor(async () => (await a.raw('EXISTS', `${prefix}k`)) === 0, 5000);
    expect(await survivor.claim('k', 60_000)).toBe('claimed');
  });

  it("never lets a late release with one attempt's token remove another attempt's claim", async () => {
    const store = new RedisReplayStore(a.client, { prefix });
    expect(await store.claim('k', 60_000, 'first')).toBe('claimed');
    // The first attempt's claim lapsed (its process stalled); a second attempt claims.
    await a.raw('DEL', `${prefix}k`);
    expect(await store.claim('k', 60_000, 'second')).toBe('claimed');
    await store.release('k', 'first');
    expect(await store.claim('k', 60_000, 'third')).toBe('in_flight');
    await store.release('k', 'second');
    expect(await store.claim('k', 60_000, 'third')).toBe('claimed');
  });

  it('renews only the claim its token took', async () => {
    const store = new RedisReplayStore(a.client, { prefix });
    expect(await store.claim('k', 1_000, 'mine')).toBe('claimed');
    expect(await store.renew('k', 600_000, 'mine')).toBe(true);
    expect(Number(await a.raw('PTTL', `${prefix}k`))).toBeGreaterThan(60_000);
    expect(await store.renew('k', 600_000, 'not-mine')).toBe(false);
    await store.complete('k', 3_600_000);
    expect(await store.renew('k', 1_000, 'mine')).toBe(false);
    expect(await store.claim('k', 1_000)).toBe('done');
  });

  // Found in a hunt: a claim that lapsed once (an event loop held up past the TTL) was never taken
  // back, so a retry later in its handlers' run ran them a second time alongside.
  it('takes back a lapsed claim no other attempt took, and its turn with ordering, as MemoryReplayStore does', async () => {
    const store = new RedisReplayStore(a.client, { prefix });
    expect(await store.claim('k', 50, 'mine')).toBe('claimed');
    const turn = { resource: 'res', position: 10 };
    expect(await store.claimInOrder('o', turn, 50, 'ordered')).toBe('claimed');
    // Redis expires the keys on its own clock: the claims and the turn lapse, and no one takes them.
    await waitFor(async () => Number(await a.raw('EXISTS', `${prefix}k`, `${prefix}o`, resourceKeys(prefix, 'res').holder)) === 0, 5000);
    expect(await store.renew('k', 60_000, 'mine')).toBe(true);
    expect(await store.renewInOrder('o', turn, 60_000, 'ordered')).toBe(true);
    expect(await store.claim('k', 60_000, 'retry')).toBe('in_flight');
    expect(await store.claimInOrder('o', turn, 60_000, 'retry')).toBe('in_flight');
    expect(await store.claimInOrder('newer', { resource: 'res', position: 20 }, 60_000, 'newer')).toBe('resource_in_flight');
  });

  it('reports a lapsed claim another attempt took, or its turn another event took, as lost, and keeps the claim while its turn is lost', async () => {
    const store = new RedisReplayStore(a.client, { prefix });
    expect(await store.claim('k', 50, 'first')).toBe('claimed');
    const turn = { resource: 'res', position: 10 };
    expect(await store.claimInOrder('o', turn, 50, 'ordered')).toBe('claimed');
    await waitFor(async () => Number(await a.raw('EXISTS', `${prefix}k`, `${prefix}o`, resourceKeys(prefix, 'res').holder)) === 0, 5000);
    expect(await store.claimInOrder('newer', { resource: 'res', position: 20 }, 60_000, 'newer')).toBe('claimed');
    expect(await store.claim('k', 60_000, 'second')).toBe('claimed');
    expect(await store.renew('k', 60_000, 'first')).toBe(false);
    expect(await store.renewInOrder('o', turn, 60_000, 'ordered')).toBe(false);
    expect(await store.claimInOrder('o', turn, 60_000, 'retry')).toBe('in_flight');
  });

  // Found in a hunt: a turn a newer event took and freed once its handlers were done looked free,
  // so the lapsed older event took it back, unreported, and held the next event of its resource off.
  it('reports a lapsed turn as lost when a newer event of its resource took it and was applied meanwhile', async () => {
    const store = new RedisReplayStore(a.client, { prefix });
    const older = { resource: 'res', position: 10 };
    expect(await store.claimInOrder('older', older, 50, 'older')).toBe('claimed');
    await waitFor(async () => Number(await a.raw('EXISTS', `${prefix}older`, resourceKeys(prefix, 'res').holder)) === 0, 5000);
    const newer = { resource: 'res', position: 20 };
    expect(await store.claimInOrder('newer', newer, 60_000, 'newer')).toBe('claimed');
    await store.completeInOrder('newer', newer, 3_600_000, 3_600_000, 'newer');
    expect(await store.renewInOrder('older', older, 60_000, 'older')).toBe(false);
    expect(await store.claimInOrder('newest', { resource: 'res', position: 30 }, 60_000, 'newest')).toBe('claimed');
    expect(await store.claimInOrder('older', older, 60_000, 'retry')).toBe('in_flight'); // its claim is still kept
  });

  it('leaves no claim behind when its command timed out but Redis ran it later', async () => {
    // A client whose commands reach Redis only after the store gave up on them.
    const late = {
      call: (...args: Array<string | number>) =>
        new Promise((resolve, reject) => setTimeout(() => raw(args).then(resolve, reject), 150)),
    };
    const raw = (args: Array<string | number>) => a.raw(String(args[0]), ...args.slice(1).map(String));
    const store = new RedisReplayStore(late, { prefix, commandTimeout: 0.05 });
    await expect(store.claim('k', 60_000, 'timed-out')).rejects.toThrow(/did not answer/);
    // The claim lands, then the release sent after it removes it.
    await waitFor(async () => (await a.raw('EXISTS', `${prefix}k`)) === 1, 5000).catch(() => undefined);
    await waitFor(async () => (await a.raw('EXISTS', `${prefix}k`)) === 0, 5000);
    expect(await new RedisReplayStore(b.client, { prefix }).claim('k', 60_000)).toBe('claimed');
  });

  // Found in a hunt: ioredis sends again a command whose reply a dropped connection lost. The claim
  // had been made, so the resent one found it and answered in_flight: the delivery was answered 409,
  // no handler ran, and its claim (and turn) stayed with no one to run it for the in-flight TTL.
  it("answers claimed to its own claim sent again (a resend after a lost reply), and takes no other attempt's", async () => {
    const raw = (args: Array<string | number>) => a.raw(String(args[0]), ...args.slice(1).map(String));
    // Each command runs twice, and the second reply is the one the store sees, as after a resend.
    const resending = { call: (...args: Array<string | number>) => raw(args).then(() => raw(args)) };
    const store = new RedisReplayStore(resending, { prefix });
    expect(await store.claim('k', 60_000, 'mine')).toBe('claimed');
    expect(await store.claimInOrder('o', { resource: 'res', position: 10 }, 60_000, 'ordered')).toBe('claimed');
    expect(await store.claim('untokened', 60_000)).toBe('claimed');
    // Another attempt's claim, or a turn another event holds, is still refused.
    expect(await store.claim('k', 60_000, 'other')).toBe('in_flight');
    expect(await store.claimInOrder('o', { resource: 'res', position: 10 }, 60_000, 'other')).toBe('in_flight');
    expect(await store.claimInOrder('newer', { resource: 'res', position: 20 }, 60_000, 'newer')).toBe('resource_in_flight');
    await store.complete('k', 60_000);
    expect(await store.claim('k', 60_000, 'mine')).toBe('done');
  });

  it('grants exactly one of many simultaneous claims across instances', async () => {
    const stores = [new RedisReplayStore(a.client, { prefix }), new RedisReplayStore(b.client, { prefix })];
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => stores[i % 2]!.claim('k', 60_000)));
    expect(results.filter((r) => r === 'claimed')).toHaveLength(1);
    expect(results.filter((r) => r === 'in_flight')).toHaveLength(99);
  });

  describe('behind two HTTP receivers sharing one Redis', () => {
    let servers: RunningServer[] = [];
    let handled: Map<string, number>;
    let failOnce: Set<string>;

    beforeEach(async () => {
      handled = new Map();
      failOnce = new Set();
      const instance = (client: TestClient) => {
        const webhooks = new MitpoWebhooks({ secret: SECRET, replay: new RedisReplayStore(client.client, { prefix }) });
        webhooks.on(['dispatch.completed', 'dispatch.failed'], async (event) => {
          const id = event.data.dispatch_id;
          if (failOnce.delete(id)) throw new Error('first attempt fails');
          handled.set(id, (handled.get(id) ?? 0) + 1);
        });
        return webhooks;
      };
      servers = [await mount('Express 5 route', instance(a)), await mount('bare node:http', instance(b))];
    });
    afterEach(async () => {
      await Promise.all(servers.map((s) => s.close()));
    });

    it('runs the handlers exactly once per delivery when each is sent to both instances at once, 50 times over', async () => {
      const ids = Array.from({ length: 50 }, (_, i) => `dsp_${i}`);
      for (const id of ids) {
        const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: id, channel: 'c', status: 'completed' } });
        const replies = await Promise.all(servers.map((s) => send(s.url, delivery)));
        const statuses = replies.map((r) => r.status).sort();
        // One handled it; the other saw it in flight (409) or already done (200 duplicate).
        expect(statuses.includes(200)).toBe(true);
        expect(statuses.every((s) => s === 200 || s === 409)).toBe(true);
      }
      expect([...handled.values()]).toEqual(ids.map(() => 1));
      expect(handled.size).toBe(50);
    });

    it('hands a delivery that failed on one instance to the other on retry', async () => {
      failOnce.add('dsp_retry');
      const delivery = signedDelivery({ event: 'dispatch.failed', secret: SECRET, data: { dispatch_id: 'dsp_retry', channel: 'c', status: 'failed' } });
      const first = await send(servers[0]!.url, delivery);
      expect(first.status).toBe(500);
      expect(first.json.error?.code).toBe('handler_failed');
      expect(handled.get('dsp_retry')).toBeUndefined();
      const retry = await send(servers[1]!.url, delivery);
      expect(retry.json).toEqual({ success: true });
      expect(handled.get('dsp_retry')).toBe(1);
      expect((await send(servers[0]!.url, delivery)).json).toEqual({ success: true, duplicate: true });
      expect(handled.get('dsp_retry')).toBe(1);
    });
  });
});

const describeOutage = REDIS_URL && redisServerInstalled() ? describe : describe.skip;
if (REDIS_URL && !redisServerInstalled()) console.log('SKIPPED the Redis outage test: it needs redis-server on PATH to stop and restart one.');

describeOutage.each(CLIENTS)('a Redis outage, with %s', (library) => {
  it('answers 503 replay_store_unavailable with no handler run while Redis is down, and recovers when it is back', async () => {
    const redis = await privateRedisServer();
    const client = await CLIENT_FACTORIES[library](redis.url);
    const failures: WebhookVerificationError[] = [];
    let runs = 0;
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: new RedisReplayStore(client.client, { commandTimeout: 1 }) });
    webhooks.onAny(() => void (runs += 1));
    webhooks.onFailure((error) => void failures.push(error));
    const server = await mount('Express 5 route', webhooks);
    try {
      const before = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect((await send(server.url, before)).status).toBe(200);
      expect(runs).toBe(1);

      await redis.stop();
      const during = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
      const refused = await send(server.url, during);
      expect(refused.status).toBe(503);
      expect(refused.json.error?.code).toBe('replay_store_unavailable');
      expect(runs).toBe(1);
      expect(failures.map((f) => f.code)).toEqual(['replay_store_unavailable']);

      await redis.start();
      // MITPO retries the refused delivery; once the client has reconnected it is handled.
      await waitFor(async () => (await send(server.url, during)).status === 200, 15_000);
      expect(runs).toBe(2);
      expect((await send(server.url, during)).json).toEqual({ success: true, duplicate: true });
    } finally {
      await server.close();
      await client.close();
      await redis.stop();
    }
  });
});
