import { inspect } from 'node:util';
import { execFileSync } from 'node:child_process';
import { MitpoWebhooks } from '../../src';
import { RedisReplayStore } from '../../src/redis';
import { signedDelivery } from '../../src/testing';

const SECRET = 'whsec_unit';

describe('RedisReplayStore without a server', () => {
  // Found by a hunt: ioredis attaches the command that failed to its error, and for AUTH that is
  // the password, which then went whole into the logger's record and onFailure's error.
  it('never passes on the password of an AUTH that Redis refused, to the log or to onFailure', async () => {
    const refused = () =>
      Object.assign(new Error('WRONGPASS invalid username-password pair or user is disabled.'), {
        command: { name: 'auth', args: ['default', 'LEAKCANARY3'] },
      });
    const records: unknown[] = [];
    const keep = (record: unknown, message?: string) => void records.push(record, message);
    const webhooks = new MitpoWebhooks({
      secret: SECRET,
      replay: new RedisReplayStore({ call: async () => Promise.reject(refused()) }),
      logger: { debug: keep, info: keep, warn: keep, error: keep },
    });
    const told: unknown[] = [];
    webhooks.onFailure((error) => void told.push(error));
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await webhooks.receive({ rawBody: body, headers })).status).toBe(503);
    expect(told).toHaveLength(1);
    for (const seen of [...records, ...told]) expect(inspect(seen, { depth: 10, showHidden: true })).not.toContain('LEAKCANARY3');
  });

  // Found in a mutation hunt: the test above looks once everything is done, when the log's own
  // cleaning (in place) has reached the error onFailure was given; an onFailure that writes the
  // error out at once must not see the password either.
  it('blanks the password before onFailure is called, not only before the log is written', async () => {
    const webhooks = new MitpoWebhooks({
      secret: SECRET,
      replay: new RedisReplayStore({
        call: async () =>
          Promise.reject(Object.assign(new Error('WRONGPASS'), { command: { name: 'AUTH', args: ['default', 'LEAKCANARY4'] } })),
      }),
    });
    const seenAtOnce: string[] = [];
    webhooks.onFailure((error) => void seenAtOnce.push(inspect(error, { depth: 10, showHidden: true })));
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await webhooks.receive({ rawBody: body, headers })).status).toBe(503);
    expect(seenAtOnce).toHaveLength(1);
    expect(seenAtOnce[0]).toContain('WRONGPASS');
    expect(seenAtOnce[0]).not.toContain('LEAKCANARY4');
  });

  // Found in a mutation hunt: only a refused claim was tried, whose error onFailure cleans first;
  // a completion refused after the handlers ran is logged with no onFailure before it.
  it('never logs the password of an AUTH refused when a handled delivery is completed', async () => {
    let commands = 0;
    const records: string[] = [];
    const keep = (record: unknown, message?: string) => void records.push(`${inspect(record, { depth: 10, showHidden: true })} ${message}`);
    const webhooks = new MitpoWebhooks({
      secret: SECRET,
      // The claim is taken; every command after it is refused, as by a server that restarted with a new password.
      replay: new RedisReplayStore({
        call: async () =>
          (commands += 1) === 1
            ? 'claimed'
            : Promise.reject(Object.assign(new Error('WRONGPASS'), { command: { name: 'auth', args: ['default', 'LEAKCANARY5'] } })),
      }),
      logger: { debug: keep, info: keep, warn: keep, error: keep },
    });
    webhooks.on('dispatch.completed', () => undefined);
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await webhooks.receive({ rawBody: body, headers })).status).toBe(200);
    await webhooks.close();
    expect(records.some((record) => record.includes('WRONGPASS'))).toBe(true);
    for (const record of records) expect(record).not.toContain('LEAKCANARY5');
  });

  it('refuses something that is neither an ioredis nor a node-redis client', () => {
    for (const client of [undefined, null, {}, { get() {} }, 'redis://localhost']) {
      expect(() => new RedisReplayStore(client as never)).toThrow(/ioredis client.*node-redis client/);
    }
    expect(() => new RedisReplayStore({ call: async () => 'OK' }, { commandTimeout: 0 })).toThrow(/commandTimeout/);
  });

  it('sends ioredis-style and node-redis-style commands under the prefix', async () => {
    const io: unknown[][] = [];
    const node: unknown[][] = [];
    const ioStore = new RedisReplayStore({ call: async (...args: unknown[]) => (io.push(args), 'claimed') }, { prefix: 'p:' });
    const nodeStore = new RedisReplayStore({ sendCommand: async (args: string[]) => (node.push(args), 'claimed') });
    expect(await ioStore.claim('k', 1000)).toBe('claimed');
    expect(await nodeStore.claim('k', 1000)).toBe('claimed');
    expect(io[0]!.slice(0, 1)).toEqual(['EVAL']);
    expect(io[0]!.slice(2, 5)).toEqual([1, 'p:k', 1000]);
    expect(node[0]!.slice(2, 5)).toEqual(['1', 'mitpo-webhooks:k', '1000']);
    expect(node[0]!.every((arg) => typeof arg === 'string')).toBe(true);
  });

  it('answers 503 replay_store_unavailable, running no handler, when Redis does not answer in time', async () => {
    const hanging = { call: () => new Promise<never>(() => {}) };
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: new RedisReplayStore(hanging, { commandTimeout: 0.02 }) });
    const ran = jest.fn();
    webhooks.onAny(ran);
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const reply = await webhooks.receive({ rawBody: body, headers });
    expect(reply).toMatchObject({ status: 503, body: { error: { code: 'replay_store_unavailable' } } });
    expect(ran).not.toHaveBeenCalled();
  });

  it('treats an answer it does not understand as the store being unavailable', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: new RedisReplayStore({ call: async () => 'OK' }) });
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await webhooks.receive({ rawBody: body, headers })).status).toBe(503);
  });

  it('is never loaded, nor bullmq or any Redis client, by importing mitpo-webhooks', () => {
    const loaded = execFileSync(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        '-e',
        "require('./src/index.ts'); console.log(JSON.stringify(Object.keys(require.cache).filter((f) => /ioredis|bullmq|[\\\\/]@?redis[\\\\/]|src[\\\\/](redis|bullmq)/.test(f))))",
      ],
      { cwd: `${__dirname}/../..`, encoding: 'utf8' },
    );
    expect(JSON.parse(loaded)).toEqual([]);
  });

  it('undoes a claim whose command timed out: a release with the same token follows, so no claim is orphaned', async () => {
    const commands: Array<Array<string | number>> = [];
    const slow = {
      call: (...args: Array<string | number>) => {
        commands.push(args);
        // The claim hangs past the timeout (Redis may still run it); the undo is answered.
        return commands.length === 1 ? new Promise<never>(() => {}) : Promise.resolve(1);
      },
    };
    const store = new RedisReplayStore(slow, { commandTimeout: 0.05 });
    await expect(store.claim('k', 60_000, 'token-1')).rejects.toThrow(/did not answer/);
    expect(commands).toHaveLength(2);
    const [claim, undo] = commands;
    expect(claim!.slice(2, 5)).toEqual([1, 'mitpo-webhooks:k', 60_000]);
    expect(claim![5]).toBe('token-1');
    expect(undo![0]).toBe('EVAL');
    expect(String(undo![1])).toContain('DEL');
    expect(undo!.slice(2)).toEqual([1, 'mitpo-webhooks:k', 'token-1']);
  });
});
