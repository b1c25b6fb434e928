import http from 'node:http';
import { MitpoWebhooks, parseEvent, verifySignature, MITPO_EVENT_NAMES } from '../../src';
import { SAMPLE_DATA, sampleData, sendDelivery, signedDelivery } from '../../src/testing';
import { listen } from '../helpers/servers';
import { deferred } from '../helpers/recorder';

const SECRET = 'whsec_kit';

describe('signedDelivery', () => {
  it('builds a delivery byte for byte like MITPO’s', () => {
    const { body, headers } = signedDelivery({
      event: 'dispatch.completed',
      secret: SECRET,
      data: { dispatch_id: 'dsp_a1b2c3d4', channel: 'meta_ads', status: 'completed', provider_resource_id: '23851234567890' },
      timestamp: new Date('2026-03-22T10:30:00.789Z'),
      sentAt: 1_774_175_401,
    });
    expect(body).toBe(
      '{"event":"dispatch.completed","timestamp":"2026-03-22T10:30:00Z","data":{"dispatch_id":"dsp_a1b2c3d4","channel":"meta_ads","status":"completed","provider_resource_id":"23851234567890"}}',
    );
    expect(Object.keys(headers)).toEqual(['Content-Type', 'X-MITPO-Signature', 'X-MITPO-Timestamp', 'X-MITPO-Event']);
    expect(headers['Content-Type']).toBe('application/json');
    expect(headers['X-MITPO-Timestamp']).toBe('1774175401');
    expect(headers['X-MITPO-Event']).toBe('dispatch.completed');
    expect(verifySignature(body, headers['X-MITPO-Signature'], SECRET)).toBe(true);
  });

  it.each(MITPO_EVENT_NAMES)('defaults data to a sample that the %s schema accepts, with a fresh id', (event) => {
    const { body } = signedDelivery({ event, secret: SECRET });
    const data = parseEvent(JSON.parse(body)).data as Record<string, unknown>;
    const idKey = event.startsWith('dispatch.') ? 'dispatch_id' : 'connection_id';
    expect(data[idKey]).toMatch(idKey === 'dispatch_id' ? /^dsp_[0-9a-f]{16}$/ : /^con_[0-9a-f]{16}$/);
    expect(data).toEqual({ ...SAMPLE_DATA[event], [idKey]: data[idKey] });
  });

  it.each([...MITPO_EVENT_NAMES, 'dispatch.cancelled'])(
    'makes two default %s deliveries in the same second different bodies (never each other’s duplicates)',
    (event) => {
      const moment = { timestamp: 1_774_175_400, sentAt: 1_774_175_401 };
      const first = signedDelivery({ event, secret: SECRET, ...moment });
      const second = signedDelivery({ event, secret: SECRET, ...moment });
      expect(first.body).not.toBe(second.body);
      expect(first.headers['X-MITPO-Signature']).not.toBe(second.headers['X-MITPO-Signature']);
    },
  );

  it('gives a type it does not know a fresh sample_id as its only data', () => {
    const { body } = signedDelivery({ event: 'dispatch.cancelled', secret: SECRET });
    expect(JSON.parse(body).data).toEqual({ sample_id: expect.stringMatching(/^smp_[0-9a-f]{16}$/) });
  });

  it('keeps the body byte-stable when data is given', () => {
    const options = { event: 'dispatch.completed' as const, secret: SECRET, data: SAMPLE_DATA['dispatch.completed'], timestamp: 1_774_175_400, sentAt: 1_774_175_401 };
    const first = signedDelivery(options);
    expect(signedDelivery(options)).toEqual(first);
    expect(first.body).toBe(
      '{"event":"dispatch.completed","timestamp":"2026-03-22T10:30:00Z","data":{"dispatch_id":"dsp_a1b2c3d4","channel":"meta_ads","status":"completed","provider_resource_id":"23851234567890"}}',
    );
  });

  it('sampleData returns a fresh copy, leaving SAMPLE_DATA untouched', () => {
    const sample = sampleData('connection.reauth_required');
    sample.channel = 'changed';
    expect(SAMPLE_DATA['connection.reauth_required']).toEqual({ connection_id: 'con_e5f6g7h8', channel: 'meta_ads', reason: 'token_expired' });
    expect(sampleData('dispatch.failed')).not.toEqual(sampleData('dispatch.failed'));
  });

  it.each([
    ['wrapped in double quotes', '"whsec_kit_quoted"', /wrapped in quotes/],
    ['wrapped in single quotes', "'whsec_kit_quoted'", /wrapped in quotes/],
    ['only the prefix', 'whsec_', /only the "whsec_" prefix/],
  ])('refuses a secret %s, without echoing it', (_name, secret, message) => {
    let error: unknown;
    try {
      signedDelivery({ event: 'dispatch.completed', secret });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(message);
    if (secret !== 'whsec_') expect((error as Error).message).not.toContain('whsec_kit_quoted');
  });

  it('refuses a bad secret or moment', () => {
    expect(() => signedDelivery({ event: 'dispatch.completed', secret: ' whsec_x' })).toThrow(TypeError);
    expect(() => signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp: new Date('nope') })).toThrow(/timestamp/);
    expect(() => signedDelivery({ event: '' as never, secret: SECRET })).toThrow(/event/);
  });

  it('refuses an option name it does not know, where a misspelt timestamp meant now', () => {
    const misspelt = { event: 'dispatch.completed', secret: SECRET, timestmap: new Date('2026-01-01T00:00:00Z') };
    expect(() => signedDelivery(misspelt as never)).toThrow(/unknown signedDelivery\(\) option "timestmap"; known options are event, data, secret, timestamp, sentAt/);
  });

  it('refuses an event name no HTTP header can carry, where it made a delivery nothing could send', () => {
    expect(() => signedDelivery({ event: 'dispatch.\u{1F600}', secret: SECRET })).toThrow(/X-MITPO-Event.*above U\+00FF/);
    expect(() => signedDelivery({ event: 'dispatch.x\r\nX-Evil: 1', secret: SECRET })).toThrow(TypeError);
    // Clients and receivers drop the spaces around a header value: it would never match the body's event.
    expect(() => signedDelivery({ event: 'dispatch.completed ', secret: SECRET })).toThrow(/spaces around it/);
    // What a header carries (Latin-1) is still taken: a test may send any name MITPO could.
    expect(signedDelivery({ event: 'dispatch.\u00e9t\u00e9', secret: SECRET }).headers['X-MITPO-Event']).toBe('dispatch.\u00e9t\u00e9');
  });
});

describe('sendDelivery', () => {
  const receiver = () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const seen: string[] = [];
    webhooks.onAny((event) => void seen.push(event.event));
    const middleware = webhooks.middleware({ path: '/hooks' });
    const listener: http.RequestListener = (req, res) => middleware(req, res, () => res.writeHead(404).end('nope'));
    return { listener, seen };
  };

  it('starts a request listener on a free port for the call, and stops it', async () => {
    const { listener, seen } = receiver();
    const result = await sendDelivery(listener, { event: 'connection.active', secret: SECRET }, { path: '/hooks' });
    expect(result.status).toBe(200);
    expect(result.body).toEqual({ success: true });
    expect(result.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(seen).toEqual(['connection.active']);
  });

  it('sends two default deliveries in the same second, and both are handled (neither is a duplicate)', async () => {
    const { listener, seen } = receiver();
    const server = await listen(http.createServer(listener));
    try {
      const url = server.url.replace('/webhooks/mitpo', '/hooks');
      const moment = { timestamp: Math.floor(Date.now() / 1000), sentAt: Math.floor(Date.now() / 1000) };
      const first = await sendDelivery(url, { event: 'connection.active', secret: SECRET, ...moment });
      const second = await sendDelivery(url, { event: 'connection.active', secret: SECRET, ...moment });
      expect([first.body, second.body]).toEqual([{ success: true }, { success: true }]);
      expect(seen).toEqual(['connection.active', 'connection.active']);
    } finally {
      await server.close();
    }
  });

  // Found by a hunt: with a URL, an explicit path was dropped without a word, and the delivery went to the URL's own path.
  it('refuses a path with a URL, which names its own path, instead of dropping it', async () => {
    await expect(sendDelivery('http://127.0.0.1:1', { event: 'dispatch.failed', secret: SECRET }, { path: '/hooks' })).rejects.toThrow(
      /path is for an app or a server: a URL is sent to as given/,
    );
  });

  it('gives an answer that is not JSON (a framework\'s 404 page) as not_json with its text', async () => {
    const { listener } = receiver();
    const result = await sendDelivery(listener, { event: 'dispatch.failed', secret: SECRET }, { path: '/elsewhere' });
    expect(result).toMatchObject({ status: 404, body: { success: false, error: { code: 'not_json', message: 'nope' } } });
  });

  it('sends to a listening server or a URL, and can resend the same delivery', async () => {
    const { listener, seen } = receiver();
    const server = await listen(http.createServer(listener));
    try {
      const url = server.url.replace('/webhooks/mitpo', '/hooks');
      const first = await sendDelivery(url, { event: 'dispatch.failed', secret: SECRET });
      const again = await sendDelivery(url, first.delivery);
      expect(again.body).toEqual({ success: true, duplicate: true });
      expect(seen).toEqual(['dispatch.failed']);
      // The same options again make a new delivery, not a replay of the first.
      const fresh = await sendDelivery(url, { event: 'dispatch.failed', secret: SECRET });
      expect(fresh.body).toEqual({ success: true });
      expect(fresh.delivery.body).not.toBe(first.delivery.body);
      expect(seen).toEqual(['dispatch.failed', 'dispatch.failed']);
      seen.length = 1;
      const notFound = await sendDelivery(new URL(server.url), first.delivery);
      expect(notFound.status).toBe(404);
      expect(notFound.body).toMatchObject({ success: false, error: { code: 'not_json' } });
    } finally {
      await server.close();
    }
  });

  it('starts an http.Server that is not listening for the call, stops it after, and can start it again', async () => {
    const { listener, seen } = receiver();
    const server = http.createServer(listener);
    const first = await sendDelivery(server, { event: 'dispatch.completed', secret: SECRET }, { path: '/hooks' });
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ success: true });
    expect(server.listening).toBe(false);
    const second = await sendDelivery(server, { event: 'dispatch.failed', secret: SECRET }, { path: '/hooks' });
    expect(second.body).toEqual({ success: true });
    expect(server.listening).toBe(false);
    expect(seen).toEqual(['dispatch.completed', 'dispatch.failed']);
  });

  it('sends to an http.Server that is already listening on its own port, and leaves it listening', async () => {
    const { listener, seen } = receiver();
    const server = http.createServer(listener);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const before = server.address();
      const result = await sendDelivery(server, { event: 'connection.active', secret: SECRET }, { path: '/hooks' });
      expect(result.body).toEqual({ success: true });
      expect(seen).toEqual(['connection.active']);
      expect(server.listening).toBe(true);
      expect(server.address()).toEqual(before);
      // Still serving: the same delivery again is recognised as a duplicate.
      expect((await sendDelivery(server, result.delivery, { path: '/hooks' })).body).toEqual({ success: true, duplicate: true });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  // Found by a hunt: the call that started a shared, unstarted server stopped it when it
  // ended, cutting off the calls still using it (`describe.concurrent`, Promise.all).
  it('keeps a server it started for calls side by side until the last one ends', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    // The first handler answers at once; the others wait until its call has ended.
    const firstEnded = deferred();
    let started = 0;
    let handled = 0;
    webhooks.onAny(async () => {
      started += 1;
      if (started > 1) await firstEnded.promise;
      handled += 1;
    });
    const middleware = webhooks.middleware({ path: '/hooks' });
    const server = http.createServer((req, res) => middleware(req, res, () => res.writeHead(404).end()));
    const calls = Array.from({ length: 5 }, () => sendDelivery(server, { event: 'dispatch.completed', secret: SECRET }, { path: '/hooks' }));
    await Promise.race(calls);
    firstEnded.resolve();
    const results = await Promise.all(calls);
    expect(results.map((result) => result.status)).toEqual([200, 200, 200, 200, 200]);
    expect(handled).toBe(5);
    expect(server.listening).toBe(false);
  });

  // Found by a hunt: a server listening on ::1 alone was posted to at 127.0.0.1, and refused.
  it('sends to a server listening on the IPv6 loopback only', async () => {
    const { listener, seen } = receiver();
    const server = http.createServer(listener);
    await new Promise<void>((resolve) => server.listen(0, '::1', resolve));
    try {
      const result = await sendDelivery(server, { event: 'connection.active', secret: SECRET }, { path: '/hooks' });
      expect(result.body).toEqual({ success: true });
      expect(seen).toEqual(['connection.active']);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('refuses an option name it does not know, in its options and in the delivery it signs, and sends nothing', async () => {
    const { listener, seen } = receiver();
    await expect(sendDelivery(listener, { event: 'dispatch.completed', secret: SECRET }, { pth: '/hooks' } as never)).rejects.toThrow(
      /unknown sendDelivery\(\) option "pth"; known options are path/,
    );
    await expect(sendDelivery(listener, { event: 'dispatch.completed', secret: SECRET, sentAtt: 1 } as never, { path: '/hooks' })).rejects.toThrow(
      /unknown signedDelivery\(\) option "sentAtt"/,
    );
    expect(seen).toEqual([]);
  });

  // Found by a hunt: a Koa or Fastify app itself (not its listener) was taken as server
  // options, and the call waited forever for an answer no listener would give.
  it('refuses an app that is no request listener, naming what to pass', async () => {
    await expect(sendDelivery({ use() {}, callback() {} } as never, { event: 'connection.active', secret: SECRET })).rejects.toThrow(
      /needs a URL, an http.Server or a request listener.*app.callback\(\).*app.server/,
    );
  });

  it('stops a server it started even when the call fails', async () => {
    const server = http.createServer((req) => req.socket.destroy());
    await expect(sendDelivery(server, { event: 'connection.active', secret: SECRET })).rejects.toThrow();
    expect(server.listening).toBe(false);
  });
});
