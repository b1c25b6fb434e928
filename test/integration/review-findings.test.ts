/**
 * One regression test (or a few) for each finding of the security review and of
 * the new-user trial behind the core rebuild. Each failed against the previous
 * main; the describe names the finding.
 */
import crypto from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import express from 'express';
import {
  MemoryReplayStore,
  MitpoWebhooks,
  sign,
  verifySignature,
  type FailureContext,
  type ReplayStore,
  type WebhookVerificationError,
} from '../../src';
import { RedisReplayStore } from '../../src/redis';
import { signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';
import { deferred, SECRET } from '../helpers/recorder';
import { listen } from '../helpers/servers';

const ROOT = join(__dirname, '..', '..');

function deliver(webhooks: MitpoWebhooks, delivery: { body: string; headers: Record<string, string> }) {
  return webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
}

/** The same signed body sent again later, as an attacker who captured it would: a fresh X-MITPO-Timestamp. */
function replayed(delivery: { body: string; headers: Record<string, string> }) {
  return { body: delivery.body, headers: { ...delivery.headers, 'X-MITPO-Timestamp': String(Math.floor(Date.now() / 1000)) } };
}

describe('replay bypass: failing replays must not evict a handled delivery', () => {
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
});

describe('hand-built HMAC: verification is node:crypto createHmac over a KeyObject', () => {
  it('verifies every delivery through crypto.createHmac with a KeyObject, not a string or pads', async () => {
    const createHmac = jest.spyOn(crypto, 'createHmac');
    try {
      const webhooks = new MitpoWebhooks({ secret: SECRET });
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      createHmac.mockClear();
      expect((await deliver(webhooks, delivery)).status).toBe(200);
      expect(createHmac).toHaveBeenCalledTimes(1);
      expect(createHmac.mock.calls[0]![0]).toBe('sha256');
      expect(createHmac.mock.calls[0]![1]).toBeInstanceOf(crypto.KeyObject);
    } finally {
      createHmac.mockRestore();
    }
  });

  it('leaves no key-derived pad block in the Buffer pool slab that ctx.rawBody is cut from', async () => {
    // Buffer.alloc is never cut from the pool, so the test's own pads cannot be what it finds.
    const innerPad = Buffer.alloc(64, 0x36);
    const outerPad = Buffer.alloc(64, 0x5c);
    for (let i = 0; i < SECRET.length; i++) {
      innerPad[i] = SECRET.charCodeAt(i) ^ 0x36;
      outerPad[i] = SECRET.charCodeAt(i) ^ 0x5c;
    }
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const slabs: Buffer[] = [];
    webhooks.onAny((_event, ctx) => void slabs.push(Buffer.from(ctx.rawBody.buffer)));
    const app = express();
    app.post('/webhooks/mitpo', webhooks.middleware());
    const server = await listen(http.createServer(app));
    try {
      for (let i = 0; i < 5; i++) {
        const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
        expect((await send(server.url, { headers, body })).status).toBe(200);
      }
    } finally {
      await server.close();
    }
    expect(slabs).toHaveLength(5);
    for (const slab of slabs) {
      expect(slab.includes(innerPad)).toBe(false);
      expect(slab.includes(outerPad)).toBe(false);
    }
  });
});

describe('raw-body and zod are the runtime dependencies, as the user asked', () => {
  it('depends on raw-body 3 and zod 4, nothing else', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(Object.keys(pkg.dependencies).sort()).toEqual(['raw-body', 'zod']);
    expect(pkg.dependencies['raw-body']).toMatch(/^\^3\./);
  });
});

describe('no private machinery in the public types', () => {
  it('ships no unique symbol or @internal member in any .d.ts', () => {
    const files = (readdirSync(join(ROOT, 'dist'), { recursive: true }) as string[]).filter((file) => file.endsWith('.d.ts'));
    expect(files.length).toBeGreaterThan(10);
    for (const file of files) {
      const text = readFileSync(join(ROOT, 'dist', file), 'utf8');
      expect({ file, symbol: /unique symbol|\[SYNC_STORE\]|@internal/.test(text) }).toEqual({ file, symbol: false });
    }
  });
});

describe('optional peers stay optional in the types', () => {
  it('imports @opentelemetry/api in no .d.ts, so a TypeScript app compiles without it', () => {
    const files = (readdirSync(join(ROOT, 'dist'), { recursive: true }) as string[]).filter((file) => file.endsWith('.d.ts'));
    expect(files.length).toBeGreaterThan(10);
    const importing = files.filter((file) => /(from|import\()\s*['"]@opentelemetry\/api['"]/.test(readFileSync(join(ROOT, 'dist', file), 'utf8')));
    expect(importing).toEqual([]);
  });
});

describe('new user: path under a mount', () => {
  it("owns /webhooks/mitpo when mounted as app.use('/webhooks', middleware({ path: '/webhooks/mitpo' }))", async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const handled = jest.fn();
    webhooks.onAny(handled);
    const app = express();
    app.use('/webhooks', webhooks.middleware({ path: '/webhooks/mitpo' }));
    app.use((_req, res) => void res.status(404).end());
    const server = await listen(http.createServer(app));
    try {
      const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect((await send(server.url, { headers, body })).status).toBe(200);
      expect(handled).toHaveBeenCalledTimes(1);
      const other = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect((await send(server.url.replace('/mitpo', '/other'), { headers: other.headers, body: other.body })).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});

describe('new user: receive() without raw bytes is the server’s mistake', () => {
  it.each([
    ['a parsed object', { event: 'dispatch.completed' }],
    ['nothing', undefined],
  ])('answers 500 body_already_parsed for %s, naming the Express, Fastify and NestJS fixes', async (_what, rawBody) => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const { headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const reply = await webhooks.receive({ rawBody: rawBody as never, headers });
    expect(reply.status).toBe(500);
    expect(reply.body).toMatchObject({ success: false, error: { code: 'body_already_parsed' } });
    const { message } = (reply.body as { error: { message: string } }).error;
    expect(message).toMatch(/Express/);
    expect(message).toMatch(/Fastify/);
    expect(message).toMatch(/NestJS.*rawBody: true/);
  });
});

describe('new user: a handler slower than inFlightTtl is never run twice at once', () => {
  it('renews the claim while the handler runs, so a retry past the TTL is 409 in_flight', async () => {
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
    const release = deferred();
    const started = deferred();
    let runs = 0;
    webhooks.on('dispatch.completed', async () => {
      runs += 1;
      started.resolve();
      await release.promise;
    });
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const first = deliver(webhooks, delivery);
    await started.promise;
    // Far past the claim's TTL by the store's clock: only a renewal after the jump keeps it.
    clock += 60_000;
    await new Promise<void>((resolve) => (onRenew = resolve));
    expect((await deliver(webhooks, replayed(delivery))).body).toMatchObject({ error: { code: 'in_flight' } });
    release.resolve();
    expect((await first).status).toBe(200);
    expect(runs).toBe(1);
  });
});

describe('new user: an authentic event is never refused for a null optional field, nor lost without a trace', () => {
  it('accepts provider_resource_id: null and hands the handler undefined', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const seen: unknown[] = [];
    webhooks.on('dispatch.completed', (event) => void seen.push(event.data.provider_resource_id));
    const delivery = signedDelivery({
      event: 'dispatch.completed',
      secret: SECRET,
      data: { dispatch_id: 'dsp_1', channel: 'meta_ads', status: 'completed', provider_resource_id: null, added_later: 7 },
    });
    expect(await deliver(webhooks, delivery)).toEqual({ status: 200, body: { success: true } });
    expect(seen).toEqual([undefined]);
  });

  it('tells onFailure the raw body and the schema issues of an authentic invalid_payload, and nothing of a forged one', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const told: Array<[WebhookVerificationError, FailureContext]> = [];
    webhooks.onFailure((error, context) => void told.push([error, context]));
    const authentic = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 42 } as never });
    expect((await deliver(webhooks, authentic)).status).toBe(400);
    const [error, context] = told[0]!;
    expect(error.code).toBe('invalid_payload');
    expect(context.authenticated).toBe(true);
    expect(context.rawBody?.toString()).toBe(authentic.body);
    expect(context.issues?.map((issue) => issue.path.join('.'))).toEqual(
      expect.arrayContaining(['data.dispatch_id', 'data.channel', 'data.status']),
    );
    const forged = signedDelivery({ event: 'dispatch.completed', secret: 'whsec_someone_else', data: { dispatch_id: 42 } as never });
    expect((await deliver(webhooks, forged)).status).toBe(401);
    expect(told[1]![1]).toEqual({ headers: expect.any(Object) });
  });
});

describe('new user: durations are seconds, and a slip of units is refused', () => {
  it.each([
    ['tolerance', 300_000],
    ['bodyTimeout', 10_000],
    ['inFlightTtl', 300_000],
    ['maxEventAge', 259_200_000],
    ['secretCacheTtl', 60_000],
  ])('%s: %d is a TypeError that names seconds', (option, value) => {
    expect(() => new MitpoWebhooks({ secret: SECRET, [option]: value })).toThrow(/seconds/);
  });

  it('takes bodyTimeout: 10 as ten seconds, not ten milliseconds', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET, bodyTimeout: 10 });
    const server = await listen(http.createServer(webhooks.middleware() as http.RequestListener));
    try {
      const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      // The second half arrives 50 ms after the first: far inside 10 s, far outside 10 ms.
      const reply = await new Promise<number>((resolve, reject) => {
        const req = http.request(server.url, { method: 'POST', headers, agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.write(body.slice(0, 20));
        setTimeout(() => req.end(body.slice(20)), 50);
      });
      expect(reply).toBe(200);
    } finally {
      await server.close();
    }
  });
});

describe('new user: a secret pasted with quotes, or only the prefix, is refused at start-up', () => {
  it.each([
    ['"whsec_abc123"', /wrapped in quotes/],
    ["'whsec_abc123'", /wrapped in quotes/],
    ['whsec_', /only the "whsec_" prefix/],
  ])('refuses %s, saying why without echoing it', (secret, why) => {
    expect(() => new MitpoWebhooks({ secret })).toThrow(why);
    expect(() => new MitpoWebhooks({ secret })).not.toThrow(/abc123/);
  });
});

describe('security: the secret function is not called once per forged request', () => {
  it('reuses its result for secretCacheTtl and shares one pending call', async () => {
    let calls = 0;
    const webhooks = new MitpoWebhooks({
      secret: async () => {
        calls += 1;
        return SECRET;
      },
    });
    const forged = Array.from({ length: 20 }, () => signedDelivery({ event: 'dispatch.completed', secret: 'whsec_attacker' }));
    const replies = await Promise.all(forged.map((delivery) => deliver(webhooks, delivery)));
    for (const delivery of forged) expect((await deliver(webhooks, delivery)).status).toBe(401);
    expect(replies.every((reply) => reply.status === 401)).toBe(true);
    expect(calls).toBe(1);
  });

  it('does not cache a failure', async () => {
    let calls = 0;
    const webhooks = new MitpoWebhooks({
      secret: async () => {
        calls += 1;
        if (calls === 1) throw new Error('vault sealed');
        return SECRET;
      },
    });
    expect((await deliver(webhooks, signedDelivery({ event: 'dispatch.completed', secret: SECRET }))).status).toBe(503);
    expect((await deliver(webhooks, signedDelivery({ event: 'dispatch.completed', secret: SECRET }))).status).toBe(200);
    expect(calls).toBe(2);
  });
});

describe('security: a claim whose Redis command timed out is undone, not orphaned', () => {
  it('sends a release with the same token after a claim that timed out', async () => {
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

describe('security: a late release never removes another attempt’s claim', () => {
  it('keeps the second attempt’s claim when the first attempt releases late (memory store)', async () => {
    let clock = 0;
    const store: ReplayStore = new MemoryReplayStore({ now: () => clock });
    expect(await store.claim('k', 1_000, 'first')).toBe('claimed');
    clock += 5_000; // the first attempt's process stalled past its TTL
    expect(await store.claim('k', 1_000, 'second')).toBe('claimed');
    await store.release('k', 'first');
    expect(await store.claim('k', 1_000, 'third')).toBe('in_flight');
  });
});

describe('security: request text is stripped of control characters before it is echoed', () => {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  const C0_C1_DEL = /[\u0000-\u001f\u007f-\u009f]/;

  it.each([
    ['a media type', { 'content-type': 'text/\u009b31mred\u0007' }, 'unsupported_media_type'],
    ['a content encoding', { 'content-encoding': 'gz\u001b[2Jip' }, 'unsupported_media_type'],
    ['X-MITPO-Event', { 'x-mitpo-event': 'dispatch.\u0085completed\u009d' }, 'event_mismatch'],
  ])('in the answer, the onFailure error and the log: %s', async (_what, extra, code) => {
    const lines: string[] = [];
    const write = (record: object, message: string) => void lines.push(JSON.stringify(record), message);
    const webhooks = new MitpoWebhooks({ secret: SECRET, logger: { debug: write, info: write, warn: write, error: write } });
    const messages: string[] = [];
    webhooks.onFailure((error) => void messages.push(error.message));
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const lowered = Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
    const reply = await webhooks.receive({ rawBody: body, headers: { ...lowered, ...extra } });
    expect(reply.body).toMatchObject({ error: { code } });
    const answer = (reply.body as { error: { message: string } }).error.message;
    for (const text of [answer, ...messages, ...lines]) expect(text).not.toMatch(C0_C1_DEL);
    expect(lines.length).toBeGreaterThan(0);
  });

  it('in an unknown event name refused by verify()', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const { body, headers } = signedDelivery({ event: 'dispatch.\u009bnew', secret: SECRET });
    await expect(webhooks.verify({ rawBody: body, headers: { ...headers, 'X-MITPO-Event': 'x' } })).rejects.toThrow();
    const { headers: same } = signedDelivery({ event: 'dispatch.\u009bnew', secret: SECRET, data: {} });
    const error = await webhooks.verify({ rawBody: body, headers: { ...same, 'X-MITPO-Signature': sign(body, SECRET) } }).catch((e: Error) => e);
    expect((error as Error).message).not.toMatch(C0_C1_DEL);
  });
});

describe('security: verifySignature never throws', () => {
  it('answers false for a payload whose buffer was detached', () => {
    const payload = new Uint8Array(Buffer.from('{"event":"x"}'));
    const header = sign(Buffer.from(payload), SECRET);
    structuredClone(payload.buffer, { transfer: [payload.buffer] });
    expect(() => verifySignature(payload, header, SECRET)).not.toThrow();
    expect(verifySignature(payload, header, SECRET)).toBe(false);
  });
});

describe('security: a receiver costs memory by use, not up front', () => {
  it('allocates no store capacity when 100 receivers are built', () => {
    const before = process.memoryUsage().arrayBuffers;
    const receivers = Array.from({ length: 100 }, () => new MitpoWebhooks({ secret: SECRET }));
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(receivers).toHaveLength(100);
    expect(grown).toBeLessThan(5 * 1024 * 1024);
  });
});

describe('Fetch handler, like the middleware', () => {
  const url = 'http://127.0.0.1/webhooks/mitpo';

  it('answers 400 body_read_failed when Content-Length disagrees with the body', async () => {
    const handler = new MitpoWebhooks({ secret: SECRET }).fetchHandler();
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const request = new Request(url, { method: 'POST', headers: { ...headers, 'Content-Length': String(body.length + 5) }, body });
    const response = await handler(request);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: 'body_read_failed' } });
  });

  it('answers 500 body_already_parsed to a body locked by another reader', async () => {
    const handler = new MitpoWebhooks({ secret: SECRET }).fetchHandler();
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const request = new Request(url, { method: 'POST', headers, body });
    request.body!.getReader();
    const response = await handler(request);
    expect(response.status).toBe(500);
    expect(await response.json()).toMatchObject({ error: { code: 'body_already_parsed' } });
  });

  it('refuses a stream that yields strings without reading past the limit', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET, limit: 100 });
    const ran = jest.fn();
    webhooks.onAny(ran);
    let pulled = 0;
    const stream = new ReadableStream<unknown>({
      pull(controller) {
        pulled += 1;
        controller.enqueue('x'.repeat(60));
        if (pulled > 1000) controller.close();
      },
    });
    const { headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const request = new Request(url, { method: 'POST', headers, body: stream as ReadableStream, duplex: 'half' } as RequestInit);
    const response = await webhooks.fetchHandler()(request);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: 'body_read_failed' } });
    expect(pulled).toBeLessThan(5);
    expect(ran).not.toHaveBeenCalled();
  });
});
