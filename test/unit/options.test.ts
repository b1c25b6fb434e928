import { MitpoWebhooks, MemoryReplayStore } from '../../src';

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
    ['a zero tolerance', { secret: SECRET, tolerance: 0 }, /tolerance must be a positive/],
    ['a negative tolerance', { secret: SECRET, tolerance: -5 }, /tolerance/],
    ['a tolerance given as a string', { secret: SECRET, tolerance: '300' }, /tolerance/],
    ['a non-positive maxEventAge', { secret: SECRET, maxEventAge: 0 }, /maxEventAge/],
    ['an unknown replay value', { secret: SECRET, replay: true }, /replay must be a ReplayStore/],
    ['a replay object missing release()', { secret: SECRET, replay: { claim() {}, complete() {} } }, /replay must be/],
    ['an unreadable limit', { secret: SECRET, limit: '1 megabyte' }, /limit must be/],
    ['a logger without error()', { secret: SECRET, logger: { warn() {} } }, /logger/],
    ['a misspelt option', { secret: SECRET, tolerence: 60 }, /unknown option "tolerence"/],
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
