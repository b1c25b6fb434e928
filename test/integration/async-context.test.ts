import { AsyncLocalStorage } from 'node:async_hooks';
import http from 'node:http';
import { MemoryReplayStore, MitpoWebhooks, sign } from '../../src';
import { signedDelivery } from '../../src/testing';
import { toRequest } from '../helpers/fetch-bridge';
import { SECRET } from '../helpers/recorder';
import { listen, MOUNTINGS, requestListenerOf, type MountingName } from '../helpers/servers';

/**
 * An AsyncLocalStorage store (a request id, an OpenTelemetry span) set before the
 * middleware must be the one the handlers, onError, onFailure and next(err) see,
 * also when the body arrives in several chunks after the middleware was called.
 */
const requestContext = new AsyncLocalStorage<{ requestId: string }>();

interface Seen {
  handler?: string;
  onError?: string;
  onFailure?: string;
  next?: string;
}

function observedReceiver(seen: Seen, options: { limit?: number } = {}): MitpoWebhooks {
  const webhooks = new MitpoWebhooks({ secret: SECRET, ...options });
  webhooks.on('dispatch.completed', () => {
    seen.handler = requestContext.getStore()?.requestId;
  });
  webhooks.on('dispatch.failed', () => {
    seen.handler = requestContext.getStore()?.requestId;
    throw new Error('handler failed on purpose');
  });
  webhooks.onError(() => {
    seen.onError = requestContext.getStore()?.requestId;
  });
  webhooks.onFailure(() => {
    seen.onFailure = requestContext.getStore()?.requestId;
  });
  return webhooks;
}

/** Wraps a mounting's app so every request runs inside its own store, as request-id middleware does. */
async function serveInContext(name: MountingName, webhooks: MitpoWebhooks) {
  const app = await requestListenerOf(name, webhooks);
  let counter = 0;
  return listen(http.createServer((req, res) => requestContext.run({ requestId: `req-${++counter}` }, () => app(req, res))));
}

/** POSTs the body in two chunks with a pause between, so the body is read across several socket reads. */
function postInChunks(url: string, headers: Record<string, string>, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const { 'Content-Length': _dropped, ...chunked } = headers as Record<string, string>;
    const req = http.request(url, { method: 'POST', headers: chunked, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    const cut = Math.floor(body.length / 2);
    req.write(body.slice(0, cut));
    setTimeout(() => req.end(body.slice(cut)), 30);
  });
}

describe.each(Object.keys(MOUNTINGS) as MountingName[])('async context under %s', (name) => {
  it('reaches the handlers and onFailure when the body arrives in chunks', async () => {
    const seen: Seen = {};
    const server = await serveInContext(name, observedReceiver(seen));
    try {
      const ok = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect(await postInChunks(server.url, ok.headers, ok.body)).toBe(200);
      expect(seen.handler).toBe('req-1');
      const failing = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
      expect(await postInChunks(server.url, failing.headers, failing.body)).toBe(500);
      expect(seen).toEqual({ handler: 'req-2', onError: 'req-2', onFailure: 'req-2' });
    } finally {
      await server.close();
    }
  });
});

describe('async context with passErrors', () => {
  it.each([
    ['a streamed body past the limit', 413, { limit: 64 }, (body: string) => body],
    ['a signed body that is not JSON', 400, {}, () => 'not json'],
  ])('reaches next(err) after %s', async (_case, status, options, makeBody) => {
    const seen: Seen = {};
    const webhooks = observedReceiver(seen, options);
    const middleware = webhooks.middleware({ passErrors: true });
    const server = await listen(
      http.createServer((req, res) =>
        requestContext.run({ requestId: 'req-passed' }, () =>
          middleware(req, res, (err) => {
            seen.next = requestContext.getStore()?.requestId;
            res.statusCode = (err as { status: number }).status;
            res.end();
          }),
        ),
      ),
    );
    try {
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      const body = makeBody(delivery.body);
      const headers = { ...delivery.headers, 'X-MITPO-Signature': sign(body, SECRET) };
      expect(await postInChunks(server.url, headers, body)).toBe(status);
      expect(seen.next).toBe('req-passed');
    } finally {
      await server.close();
    }
  });
});

describe('async context under the Fetch handler and receive()', () => {
  it('reaches the handlers from a streamed Request body', async () => {
    const seen: Seen = {};
    const handler = observedReceiver(seen).fetchHandler();
    const { headers, body } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const bytes = Buffer.from(body);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.subarray(0, 10));
        setTimeout(() => {
          controller.enqueue(bytes.subarray(10));
          controller.close();
        }, 20);
      },
    });
    const request = new Request('http://127.0.0.1/webhooks/mitpo', { method: 'POST', headers, body: stream, duplex: 'half' } as RequestInit);
    const response = await requestContext.run({ requestId: 'fetch-1' }, () => handler(request));
    expect(response.status).toBe(200);
    expect(seen.handler).toBe('fetch-1');
  });

  it('reaches the handlers, onError and onFailure from receive()', async () => {
    const seen: Seen = {};
    const webhooks = observedReceiver(seen);
    const failing = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
    const reply = await requestContext.run({ requestId: 'receive-1' }, () =>
      webhooks.receive({ rawBody: failing.body, headers: failing.headers }),
    );
    expect(reply.status).toBe(500);
    expect(seen).toEqual({ handler: 'receive-1', onError: 'receive-1', onFailure: 'receive-1' });
    // toRequest is used by the other suites; a non-POST Request keeps the context too.
    const response = await requestContext.run({ requestId: 'fetch-405' }, () =>
      webhooks.fetchHandler()(toRequest('http://127.0.0.1/', { method: 'GET', headers: {}, body: '' })),
    );
    expect(response.status).toBe(405);
    expect(seen.onFailure).toBe('fetch-405');
  });
});

describe('claim renewal', () => {
  it("runs outside every request's async context, not in the one that happened to start it", async () => {
    const requests = new AsyncLocalStorage<string>();
    const renewedIn: Array<string | undefined> = [];
    const store = new MemoryReplayStore();
    const renew = store.renew.bind(store);
    store.renew = (...args) => {
      renewedIn.push(requests.getStore());
      return renew(...args);
    };
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: store, inFlightTtl: 0.03 });
    let renewals = 0;
    webhooks.onAny(async () => {
      // Held until a few renewals happened, under both requests' claims.
      const seen = renewals;
      while (renewedIn.length < seen + 4) await new Promise((resolve) => setTimeout(resolve, 5));
      renewals = renewedIn.length;
    });
    const deliver = (id: string) =>
      requests.run(id, () => {
        const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
        return webhooks.receive({ rawBody: body, headers });
      });
    const answers = await Promise.all([deliver('request-A'), deliver('request-B')]);
    expect(answers.map((answer) => answer.status)).toEqual([200, 200]);
    expect(renewedIn.length).toBeGreaterThan(0);
    expect(renewedIn.filter((id) => id !== undefined)).toEqual([]);
  });
});
