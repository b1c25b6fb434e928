import { execFileSync } from 'node:child_process';
import { inspect } from 'node:util';
import { Pool } from 'pg';
import { MitpoWebhooks, MemoryReplayStore } from '../../src';
import { BullMQDeliveryQueue } from '../../src/bullmq';
import { PostgresDeliveryQueue } from '../../src/postgres';
import { RedisReplayStore } from '../../src/redis';
import { koaMitpoWebhooks } from '../../src/koa';
import { MemoryDeliveryQueue } from '../../src/testing';

const SECRET = 'whsec_valid_secret';

describe('new MitpoWebhooks(options) refuses misconfiguration at once', () => {
  it.each([
    ['no options at all', undefined, /options object/],
    ['a missing secret', {}, /secret is missing/],
    ['an empty secret', { secret: '' }, /secret is empty/],
    ['an undefined secret from an unset env var', { secret: process.env.MITPO_SURELY_UNSET_VARIABLE }, /secret is missing/],
    ['a secret with a trailing newline', { secret: `${SECRET}\n` }, /whitespace.*copy-paste/],
    ['a secret with a leading space', { secret: ` ${SECRET}` }, /whitespace/],
    ['an empty list of secrets', { secret: [] }, /empty list/],
    ['a padded secret inside a rotation list', { secret: [SECRET, `${SECRET} `] }, /secret\[1\].*whitespace/],
    ['a number as secret', { secret: 42 }, /must be a string/],
    // Found in a hunt: what an unset variable reads as once written into a string (`${process.env.X}`).
    ['the text "undefined" as secret', { secret: 'undefined' }, /secret is the text "undefined".*unset environment variable/],
    ['the text "null" as secret', { secret: 'null' }, /secret is the text "null"/],
    ['a zero tolerance', { secret: SECRET, tolerance: 0 }, /tolerance must be a positive/],
    ['a negative tolerance', { secret: SECRET, tolerance: -5 }, /tolerance/],
    ['a tolerance given as a string', { secret: SECRET, tolerance: '300' }, /tolerance/],
    ['a non-positive maxEventAge', { secret: SECRET, maxEventAge: 0 }, /maxEventAge/],
    ['an unknown replay value', { secret: SECRET, replay: true }, /replay must be a ReplayStore/],
    ['a replay object missing release()', { secret: SECRET, replay: { claim() {}, complete() {} } }, /replay must be/],
    ['an unreadable limit', { secret: SECRET, limit: '1 megabyte' }, /limit must be/],
    ['a logger without error()', { secret: SECRET, logger: { warn() {} } }, /logger/],
    ['a misspelt option', { secret: SECRET, tolerence: 60 }, /unknown option "tolerence"/],
    ['a limit of no bytes, which refuses every delivery', { secret: SECRET, limit: 0 }, /limit must be/],
    ['a limit under one byte', { secret: SECRET, limit: '0.5b' }, /limit must be/],
  ])('%s', (_name, options, message) => {
    expect(() => new MitpoWebhooks(options as never)).toThrow(TypeError);
    expect(() => new MitpoWebhooks(options as never)).toThrow(message);
  });

  it('never echoes the secret in a construction error', () => {
    for (const secret of [` whsec_LEAKME`, `whsec_LEAKME\t`, ['whsec_ok', ' whsec_LEAKME']]) {
      let thrown: unknown;
      try {
        new MitpoWebhooks({ secret });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(TypeError);
      expect((thrown as TypeError).message).not.toContain('LEAKME');
    }
  });

  it('accepts every documented form of secret and the documented options', () => {
    expect(() => new MitpoWebhooks({ secret: SECRET })).not.toThrow();
    expect(() => new MitpoWebhooks({ secret: [SECRET, 'whsec_old'] })).not.toThrow();
    expect(() => new MitpoWebhooks({ secret: () => SECRET })).not.toThrow();
    expect(() => new MitpoWebhooks({ secret: async () => [SECRET] })).not.toThrow();
    expect(
      () =>
        new MitpoWebhooks({
          secret: SECRET,
          tolerance: 300,
          maxEventAge: 259_200,
          replay: new MemoryReplayStore(),
          limit: '1mb',
          inFlightTtl: 60,
          logger: console,
        }),
    ).not.toThrow();
    expect(() => new MitpoWebhooks({ secret: SECRET, replay: false, limit: 2048 })).not.toThrow();
  });

  it('refuses unknown event names and non-function handlers when they are registered, not per request', () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    expect(() => webhooks.on('dispatch.complete' as never, () => {})).toThrow(/unknown event type.*onAny/);
    expect(() => webhooks.on([] as never, () => {})).toThrow(/at least one event name/);
    expect(() => webhooks.on('dispatch.completed', 'nope' as never)).toThrow(/needs a function/);
    expect(() => webhooks.onAny(undefined as never)).toThrow(TypeError);
    expect(() => webhooks.onError(undefined as never)).toThrow(TypeError);
    expect(() => webhooks.onFailure(undefined as never)).toThrow(TypeError);
    expect(() => webhooks.middleware({ path: 'webhooks' })).toThrow(/start(ing)? with "\/"/);
    expect(() => webhooks.middleware({ pth: '/x' } as never)).toThrow(/unknown middleware option "pth"/);
  });
});

// Found in review: a value put in the wrong option (an env var read into `tolerance`, a
// mixed-up `path`) was quoted back in the TypeError, which reaches start-up logs; when
// that value is the webhook secret, the log holds it.
describe('a secret put in the wrong option is never quoted back', () => {
  const LEAK = 'whsec_LEAKCANARY_0123456789';
  const pool = { query: async () => ({ rows: [] }), connect: async () => ({}) };
  const worker = () => new MitpoWebhooks({ secret: SECRET, replay: false, queue: new MemoryDeliveryQueue() });
  it.each<[string, (value: unknown) => unknown]>([
    ['tolerance', (value) => new MitpoWebhooks({ secret: SECRET, tolerance: value as never })],
    ['bodyTimeout', (value) => new MitpoWebhooks({ secret: SECRET, bodyTimeout: value as never })],
    ['limit', (value) => new MitpoWebhooks({ secret: SECRET, limit: value as never })],
    ['middleware path', (value) => new MitpoWebhooks({ secret: SECRET }).middleware({ path: value as never })],
    ['koaMitpoWebhooks path', (value) => koaMitpoWebhooks(new MitpoWebhooks({ secret: SECRET }), { path: value as never })],
    ['startWorker() trace', (value) => worker().startWorker({ trace: value as never })],
    ['MemoryReplayStore maxEntries', (value) => new MemoryReplayStore({ maxEntries: value as never })],
    ['MemoryDeliveryQueue attempts', (value) => new MemoryDeliveryQueue({ attempts: value as never })],
    ['BullMQDeliveryQueue attempts', (value) => new BullMQDeliveryQueue({ connection: { url: 'redis://127.0.0.1:1' }, attempts: value as never })],
    ['PostgresDeliveryQueue maxPendingBytes', (value) => new PostgresDeliveryQueue({ pool: pool as never, maxPendingBytes: value as never })],
  ])('%s: says what kind of value it got, not the value', (_name, build) => {
    // (In review: a password such as 2024LEAKCANARY or _LEAKCANARY read as an amount, and was quoted.)
    for (const value of [LEAK, { secret: LEAK }, [LEAK], '2024LEAKCANARY', '_LEAKCANARY']) {
      expect(() => build(value)).toThrow(TypeError);
      expect(() => build(value)).not.toThrow(/LEAKCANARY/);
    }
    expect(() => build(LEAK)).toThrow(/got a string of 27 characters/);
  });

  it('still shows a value that reads as an amount, since seeing it is the fix', () => {
    expect(() => new MitpoWebhooks({ secret: SECRET, tolerance: '300' as never })).toThrow(/got "300"/);
    expect(() => new MitpoWebhooks({ secret: SECRET, limit: '1 megabyte' })).toThrow(/got "1 megabyte"/);
    expect(() => new MemoryDeliveryQueue({ attempts: 0 })).toThrow(/got 0\)/);
  });
});

describe('durations are seconds, and a slip of units is refused', () => {
  it.each([
    ['tolerance', 300_000],
    ['bodyTimeout', 10_000],
    ['inFlightTtl', 300_000],
    ['maxEventAge', 259_200_000],
    ['secretCacheTtl', 60_000],
  ])('%s: %d is a TypeError that names seconds', (option, value) => {
    expect(() => new MitpoWebhooks({ secret: SECRET, [option]: value })).toThrow(/seconds/);
  });
});

describe('a secret pasted with quotes, or only the prefix, is refused at start-up', () => {
  it.each([
    ['"whsec_abc123"', /wrapped in quotes/],
    ["'whsec_abc123'", /wrapped in quotes/],
    ['whsec_', /only the "whsec_" prefix/],
  ])('refuses %s, saying why without echoing it', (secret, why) => {
    expect(() => new MitpoWebhooks({ secret })).toThrow(why);
    expect(() => new MitpoWebhooks({ secret })).not.toThrow(/abc123/);
  });
});

describe('MemoryReplayStore options', () => {
  it('refuses a maxEntries that is not a positive whole number', () => {
    for (const maxEntries of [0, -1, 1.5, Number.NaN, Infinity]) {
      expect(() => new MemoryReplayStore({ maxEntries })).toThrow(TypeError);
    }
  });

  // Found in a mutation hunt: only values below the range were tried, not its ends.
  it('takes a maxEntries from 1 to 16 777 216, the ends included, and refuses one more', () => {
    for (const maxEntries of [1, 2 ** 24]) expect(new MemoryReplayStore({ maxEntries }).maxEntries).toBe(maxEntries);
    expect(() => new MemoryReplayStore({ maxEntries: 2 ** 24 + 1 })).toThrow('maxEntries must be a whole number from 1 to 16777216 (got 16777217)');
  });

  it('refuses a clock that is not a function when it is built, not at the first delivery', () => {
    expect(() => new MemoryReplayStore({ now: 'x' as never })).toThrow(/MemoryReplayStore now must be a function/);
  });
});

// A misspelt option would otherwise be ignored in silence and its default used (`atempts: 3`
// retrying five times), so every options object is checked where it is given.
describe('a misspelt option is a TypeError wherever options are given', () => {
  const pool = { query: async () => ({ rows: [] }), connect: async () => ({}) };
  const redis = { call: async () => null };
  it.each<[string, () => unknown, string]>([
    ['new MemoryReplayStore()', () => new MemoryReplayStore({ maxEntrie: 5 } as never), 'unknown MemoryReplayStore option "maxEntrie"; known options are maxEntries, now'],
    ['new MemoryDeliveryQueue()', () => new MemoryDeliveryQueue({ atempts: 1 } as never), 'unknown MemoryDeliveryQueue option "atempts"'],
    ['new RedisReplayStore()', () => new RedisReplayStore(redis, { prefx: 'x' } as never), 'unknown RedisReplayStore option "prefx"'],
    ['new BullMQDeliveryQueue()', () => new BullMQDeliveryQueue({ connection: { url: 'redis://127.0.0.1:1' }, atempts: 3 } as never), 'unknown BullMQDeliveryQueue option "atempts"'],
    ['new PostgresDeliveryQueue()', () => new PostgresDeliveryQueue({ pool, pollIntervall: 1 } as never), 'unknown PostgresDeliveryQueue option "pollIntervall"'],
    ['webhooks.close()', () => new MitpoWebhooks({ secret: SECRET }).close({ timout: 1 } as never), 'unknown close() option "timout"'],
    [
      'webhooks.startWorker()',
      () => new MitpoWebhooks({ secret: SECRET, replay: false, queue: new MemoryDeliveryQueue() }).startWorker({ concurency: 10 } as never),
      'unknown startWorker() option "concurency"; known options are concurrency, trace',
    ],
  ])('%s', (_name, build, message) => {
    expect(build).toThrow(TypeError);
    expect(build).toThrow(message);
  });
});

describe('duration options a millisecond slip cannot pass', () => {
  it.each([
    ['bodyTimeout', 120, 2000],
    ['tolerance', 3600, 300_000],
    ['handlerTimeout', 3600, 30_000],
  ])('%s: at most %p seconds; %p is refused, naming the unit', (name, most, slip) => {
    expect(() => new MitpoWebhooks({ secret: SECRET, [name]: most })).not.toThrow();
    expect(() => new MitpoWebhooks({ secret: SECRET, [name]: most + 1 })).toThrow(TypeError);
    expect(() => new MitpoWebhooks({ secret: SECRET, [name]: slip })).toThrow(new RegExp(`${name} is ${slip} seconds.*not milliseconds`));
  });
});

describe("a queue's backoff in milliseconds is refused, naming the unit", () => {
  const pool = { query: async () => ({ rows: [] }), connect: async () => ({}) };
  it.each<[string, (backoff: number) => unknown]>([
    ['BullMQDeliveryQueue', (backoff) => new BullMQDeliveryQueue({ connection: { url: 'redis://127.0.0.1:1' }, backoff })],
    ['PostgresDeliveryQueue', (backoff) => new PostgresDeliveryQueue({ pool: pool as never, backoff })],
    ['MemoryDeliveryQueue', (backoff) => new MemoryDeliveryQueue({ backoff })],
  ])('%s: at most an hour, so its default written in milliseconds (10000) cannot pass', (_name, build) => {
    expect(() => build(10_000)).toThrow(/backoff is 10000 seconds.*not milliseconds/);
    expect(() => build(3601)).toThrow(TypeError);
  });
});

describe('close() handed a signal name, as process.on(signal, webhooks.close.bind(webhooks)) does', () => {
  it('closes with its defaults instead of throwing in the signal handler', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    await expect((webhooks.close as (signal: unknown) => Promise<void>)('SIGTERM')).resolves.toBeUndefined();
    const { status } = await webhooks.receive({ rawBody: '{}', headers: {} });
    expect(status).toBe(503);
  });

  it('is still a TypeError given a number, which can only be a timeout given the wrong way', () => {
    expect(() => new MitpoWebhooks({ secret: SECRET }).close(10 as never)).toThrow(TypeError);
  });
});

// Found by a hunt: BullMQ 6.7 makes ioredis an optional peer, so `npm install bullmq` leaves it
// out; a worker on `{ url }` then spun at full CPU and the web process answered nothing.
describe('BullMQDeliveryQueue without ioredis installed', () => {
  const constructed = (connection: string) =>
    execFileSync(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        '-e',
        `const Module = require('node:module');
         const resolve = Module._resolveFilename;
         Module._resolveFilename = function (request, ...rest) {
           if (request === 'ioredis') throw Object.assign(new Error("Cannot find module 'ioredis'"), { code: 'MODULE_NOT_FOUND' });
           return resolve.call(this, request, ...rest);
         };
         const { BullMQDeliveryQueue } = require('./src/bullmq');
         try {
           new BullMQDeliveryQueue({ connection: ${connection} });
           console.log('constructed');
         } catch (error) {
           console.log(error.constructor.name + ': ' + error.message);
         }
         process.exit(0);`,
      ],
      { cwd: `${__dirname}/../..`, encoding: 'utf8' },
    ).trim();

  it('is a TypeError for connection options, naming the package to install', () => {
    expect(constructed("{ url: 'redis://127.0.0.1:1' }")).toMatch(/^TypeError: mitpo-webhooks\/bullmq: .*npm install ioredis/);
  });

  it('takes a client made without it (node-redis)', () => {
    expect(constructed('{ duplicate() { return this; }, connect: async () => undefined, sendCommand: async () => null, isOpen: false, isReady: false, on() {} }')).toBe('constructed');
  });
});

// Found by a hunt: TypeScript's `private` fields are ordinary properties at run time, so
// console.log(webhooks) printed the queue's Redis URL, and pg's pool its connection string.
describe('a receiver with a queue, logged or serialised', () => {
  it('shows no password of the Redis or Postgres connection', async () => {
    const bullmq = new BullMQDeliveryQueue({ connection: { url: 'redis://:LEAKCANARY@127.0.0.1:1/5' } });
    const pool = new Pool({ connectionString: 'postgres://postgres:LEAKCANARY@127.0.0.1:1/test' });
    try {
      for (const queue of [bullmq, new PostgresDeliveryQueue({ pool })]) {
        const webhooks = new MitpoWebhooks({ secret: 'whsec_unit', queue });
        expect(inspect(webhooks, { depth: 12 })).not.toContain('LEAKCANARY');
        expect(inspect(queue, { depth: 12 })).not.toContain('LEAKCANARY');
        let json = '';
        try {
          json = JSON.stringify(webhooks);
        } catch {
          // A circular structure prints nothing.
        }
        expect(json).not.toContain('LEAKCANARY');
      }
    } finally {
      await bullmq.close();
      await pool.end();
    }
  });
});
