import http from 'node:http';
import fc from 'fast-check';
import { MitpoWebhooks, sign, type WebhookErrorCode } from '../../src';
import { statusForCode } from '../../src/errors';
import { signedDelivery } from '../../src/testing';
import { nowInSeconds } from '../helpers/clock';
import { send } from '../helpers/http-client';
import { listen } from '../helpers/servers';

const SECRET = 'whsec_property_0123456789';
const SEED = 20_261_127;
const RUNS = { seed: SEED, numRuns: 300 };

const HEX = fc.constantFrom(...'0123456789abcdef');
const hex64 = fc.string({ unit: HEX, minLength: 64, maxLength: 64 });
const anyText = fc.oneof(fc.string(), fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ maxLength: 5000 }));
const headerValue = fc.oneof(anyText, fc.array(anyText, { minLength: 2, maxLength: 3 }));
const knownEvent = fc.constantFrom('dispatch.accepted', 'dispatch.completed', 'dispatch.failed', 'connection.active', 'connection.reauth_required');

function countingReceiver(options: Partial<ConstructorParameters<typeof MitpoWebhooks>[0]> = {}) {
  let runs = 0;
  const webhooks = new MitpoWebhooks({ secret: SECRET, replay: false, ...options });
  webhooks.onAny(() => void (runs += 1));
  return { webhooks, runs: () => runs };
}

/** What a signature header must be answered with, from API.md alone. */
function expectedForSignature(value: string | string[]): string {
  if (Array.isArray(value)) return 'malformed_signature';
  if (value.trim() === '') return 'missing_signature';
  return /^sha256=[0-9a-f]{64}$/.test(value) ? 'invalid_signature' : 'malformed_signature';
}

/** What a timestamp header must be answered with, for an otherwise good delivery. */
function expectedForTimestamp(value: string | string[], now: number): string {
  if (Array.isArray(value)) return 'malformed_timestamp';
  if (value.trim() === '') return 'missing_timestamp';
  if (!/^[0-9]{1,12}$/.test(value)) return 'malformed_timestamp';
  return Math.abs(now - Number(value)) > 300 ? 'timestamp_out_of_tolerance' : 'success';
}

describe('any change to a signed delivery is refused, and no handler runs', () => {
  const base = fc.record({ event: knownEvent, id: fc.string({ minLength: 1, maxLength: 40 }), channel: fc.string({ maxLength: 20 }) });

  it('a flipped byte anywhere in the body → 401 invalid_signature', async () => {
    await fc.assert(
      fc.asyncProperty(base, fc.nat(), fc.integer({ min: 1, max: 255 }), async ({ event, id, channel }, at, mask) => {
        const { webhooks, runs } = countingReceiver();
        const { body, headers } = signedDelivery({ event, secret: SECRET, data: { dispatch_id: id, channel, status: 's' } });
        const bytes = Buffer.from(body);
        const index = at % bytes.length;
        bytes[index] = bytes[index]! ^ mask;
        const reply = await webhooks.receive({ rawBody: bytes, headers });
        expect(reply).toMatchObject({ status: 401, body: { error: { code: 'invalid_signature' } } });
        expect(runs()).toBe(0);
      }),
      RUNS,
    );
  });

  it('another well-formed signature → 401; a truncated one → 400 malformed_signature (API.md: exactly 64 hex digits)', async () => {
    await fc.assert(
      fc.asyncProperty(base, hex64, fc.integer({ min: 0, max: 70 }), async ({ event }, otherHex, keep) => {
        const { webhooks, runs } = countingReceiver();
        const { body, headers } = signedDelivery({ event, secret: SECRET });
        const good = headers['X-MITPO-Signature']!;
        fc.pre(`sha256=${otherHex}` !== good);
        const changed = await webhooks.receive({ rawBody: body, headers: { ...headers, 'X-MITPO-Signature': `sha256=${otherHex}` } });
        expect(changed).toMatchObject({ status: 401, body: { error: { code: 'invalid_signature' } } });
        const truncated = await webhooks.receive({ rawBody: body, headers: { ...headers, 'X-MITPO-Signature': good.slice(0, keep) } });
        expect(truncated.status).toBe(400);
        expect(truncated.body).toMatchObject({ error: { code: keep === 0 ? 'missing_signature' : 'malformed_signature' } });
        expect(runs()).toBe(0);
      }),
      RUNS,
    );
  });

  it('a body signed with any other secret → 401', async () => {
    const otherSecret = fc.string({ minLength: 1, maxLength: 60 }).filter((s) => s.trim() === s && s !== SECRET);
    await fc.assert(
      fc.asyncProperty(knownEvent, otherSecret, async (event, secret) => {
        const { webhooks, runs } = countingReceiver();
        const { body, headers } = signedDelivery({ event, secret });
        expect((await webhooks.receive({ rawBody: body, headers })).status).toBe(401);
        expect(runs()).toBe(0);
      }),
      RUNS,
    );
  });
});

describe('arbitrary header values never throw and get the code API.md gives them', () => {
  it('X-MITPO-Signature: empty, huge, repeated, non-hex, uppercase, bare prefix, other schemes', async () => {
    const signature = fc.oneof(
      headerValue,
      hex64.map((h) => `sha256=${h.toUpperCase()}`),
      hex64.map((h) => `sha1=${h}`),
      hex64.map((h) => `SHA256=${h}`),
      hex64.map((h) => `sha256=${h}, sha256=${h}`),
      hex64.map((h) => `v1,${h}`),
      fc.constant('sha256='),
      hex64.map((h) => `sha256=${h}`),
    );
    await fc.assert(
      fc.asyncProperty(signature, async (value) => {
        const { webhooks, runs } = countingReceiver();
        const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
        const reply = await webhooks.receive({ rawBody: body, headers: { ...headers, 'X-MITPO-Signature': value } });
        const code = expectedForSignature(value);
        expect(reply.body).toMatchObject({ error: { code } });
        expect(reply.status).toBe(statusForCode(code as WebhookErrorCode));
        expect(runs()).toBe(0);
      }),
      RUNS,
    );
  });

  it('X-MITPO-Timestamp: any text, numbers near and far, milliseconds, repeated', async () => {
    // A clock that stands still: values at the tolerance's edge must not depend on a
    // second ticking between generating them and checking them.
    const now = nowInSeconds();
    const timestamp = fc.oneof(
      headerValue,
      fc.integer({ min: -1000, max: 1000 }).map((d) => String(now + d)),
      fc.integer({ min: 0, max: 2 ** 53 - 1 }).map(String),
      fc.constant(String(now * 1000)),
      fc.integer({ min: -400, max: 400 }).map((d) => `${now + d}.5`),
    );
    await fc.assert(
      fc.asyncProperty(timestamp, async (value) => {
        const { webhooks, runs } = countingReceiver({ now: () => now * 1000 + 500 });
        const { body, headers } = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
        const reply = await webhooks.receive({ rawBody: body, headers: { ...headers, 'X-MITPO-Timestamp': value } });
        const expected = expectedForTimestamp(value, now);
        if (expected === 'success') {
          expect(reply.status).toBe(200);
          expect(runs()).toBe(1);
        } else {
          expect(reply.body).toMatchObject({ error: { code: expected } });
          expect(runs()).toBe(0);
        }
      }),
      RUNS,
    );
  });

  it('Content-Type and X-MITPO-Event: anything is 200, 400 or 415, never a crash', async () => {
    await fc.assert(
      fc.asyncProperty(fc.option(headerValue), fc.option(headerValue), async (contentType, eventHeader) => {
        const { webhooks } = countingReceiver();
        const { body, headers } = signedDelivery({ event: 'connection.active', secret: SECRET });
        const reply = await webhooks.receive({
          rawBody: body,
          headers: { ...headers, 'Content-Type': contentType ?? undefined, 'X-MITPO-Event': eventHeader ?? undefined },
        });
        expect([200, 400, 415]).toContain(reply.status);
        if (reply.status === 400) expect(reply.body).toMatchObject({ error: { code: 'event_mismatch' } });
      }),
      RUNS,
    );
  });
});

describe('arbitrary correctly signed bodies are 200 or 400, never 500, and never pollute a prototype', () => {
  const prototypeKeys = () => Object.getOwnPropertyNames(Object.prototype).sort();
  const before = prototypeKeys();

  function deepNesting(depth: number, kind: 'array' | 'object'): string {
    return kind === 'array' ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
  }

  const bodies = fc.oneof(
    fc.json().map((text) => Buffer.from(text)),
    fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
    fc.tuple(fc.integer({ min: 1, max: 100_000 }), fc.constantFrom('array' as const, 'object' as const)).map(([d, k]) => Buffer.from(deepNesting(d, k))),
    fc.constantFrom('1e400', '-1e400', '123456789012345678901234567890', '[1e400]', '"\\ud800"').map((t) => Buffer.from(t)),
    // Valid events carrying hostile extras: __proto__ and constructor keys at every level.
    fc.tuple(knownEvent, fc.jsonValue()).map(([event, junk]) =>
      Buffer.from(
        `{"event":"${event}","timestamp":"${new Date().toISOString()}","__proto__":{"polluted":${JSON.stringify(junk)}},` +
          `"constructor":{"prototype":{"polluted":1}},"data":{"dispatch_id":"d","channel":"c","status":"s","__proto__":{"polluted":2},"n":1e400}}`,
      ),
    ),
    // An unknown event type with arbitrary data.
    fc.tuple(fc.string({ minLength: 1, maxLength: 30 }), fc.dictionary(fc.string(), fc.jsonValue())).map(([event, data]) =>
      Buffer.from(JSON.stringify({ event, timestamp: new Date().toISOString(), data })),
    ),
  );

  it('through receive()', async () => {
    await fc.assert(
      fc.asyncProperty(bodies, async (body) => {
        const { webhooks } = countingReceiver({ limit: '2mb' });
        const headers = { 'X-MITPO-Signature': sign(body, SECRET), 'X-MITPO-Timestamp': String(nowInSeconds()) };
        const reply = await webhooks.receive({ rawBody: body, headers });
        expect([200, 400]).toContain(reply.status);
        if (reply.status === 400) expect(['invalid_json', 'invalid_payload']).toContain((reply.body as { error: { code: string } }).error.code);
        expect(prototypeKeys()).toEqual(before);
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      }),
      RUNS,
    );
  });
});

describe('the event schema holds for every dispatch event', () => {
  it('a required field missing or of the wrong type → 400 invalid_payload, no handler', async () => {
    const field = fc.constantFrom('dispatch_id', 'channel', 'status');
    const wrong = fc.oneof(fc.constant(undefined), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string()), fc.object());
    const event = fc.constantFrom('dispatch.accepted', 'dispatch.completed', 'dispatch.failed');
    await fc.assert(
      fc.asyncProperty(event, field, wrong, async (name, key, value) => {
        const { webhooks, runs } = countingReceiver();
        const data: Record<string, unknown> = { dispatch_id: 'd', channel: 'c', status: 's', [key]: value };
        if (value === undefined) delete data[key];
        const body = JSON.stringify({ event: name, timestamp: new Date().toISOString(), data });
        const reply = await webhooks.receive({ rawBody: body, headers: { 'X-MITPO-Signature': sign(body, SECRET), 'X-MITPO-Timestamp': String(nowInSeconds()) } });
        expect(reply).toMatchObject({ status: 400, body: { error: { code: 'invalid_payload' } } });
        expect((reply.body as { error: { message: string } }).error.message).toContain(`data.${key}`);
        expect(runs()).toBe(0);
      }),
      RUNS,
    );
  });
});

describe('over real HTTP, through the middleware', () => {
  it('arbitrary printable signature and timestamp headers answer the right 4xx, and the server stays up', async () => {
    const { webhooks, runs } = countingReceiver();
    const server = await listen(http.createServer((req, res) => webhooks.middleware()(req, res, () => res.end())));
    const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 200 });
    const value = fc.oneof(printable, fc.array(printable, { minLength: 2, maxLength: 3 }), hex64.map((h) => `sha256=${h}`));
    try {
      await fc.assert(
        fc.asyncProperty(value, value, async (signature, timestamp) => {
          const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
          const reply = await send(server.url, { headers: { ...headers, 'X-MITPO-Signature': signature, 'X-MITPO-Timestamp': timestamp }, body });
          // Node trims header values and joins repeated X- headers with ", " before we see them.
          const seenSignature = Array.isArray(signature) ? signature.map((s) => s.trim()).join(', ') : signature.trim();
          const seenTimestamp = Array.isArray(timestamp) ? timestamp.map((s) => s.trim()).join(', ') : timestamp.trim();
          const signatureCode = expectedForSignature(seenSignature);
          const code = signatureCode !== 'invalid_signature' ? signatureCode : expectedForTimestamp(seenTimestamp, nowInSeconds());
          const answered = code === 'success' ? 'invalid_signature' : code;
          expect(reply.json.error?.code).toBe(answered);
          expect(reply.status).toBe(statusForCode(answered as WebhookErrorCode));
        }),
        { seed: SEED, numRuns: 200 },
      );
      expect(runs()).toBe(0);
      const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect((await send(server.url, { headers, body })).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});
