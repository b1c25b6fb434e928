import http from 'node:http';
import { Readable } from 'node:stream';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import fastify5 from 'fastify';
import fastify4 from 'fastify4';
import Koa3 from 'koa';
import Koa2 from 'koa2';
import express from 'express';
import express4 from 'express4';
import { MitpoWebhooks } from '../../src';
import * as fastifyEntry from '../../src/fastify';
import { fastifyMitpoWebhooks } from '../../src/fastify';
import { koaMitpoWebhooks } from '../../src/koa';
import { signedDelivery } from '../../src/testing';
import * as sanitizing from '../../src/text/sanitize-text';
import { send } from '../helpers/http-client';
import { recordingReceiver, SECRET } from '../helpers/recorder';
import { listen, mount, WEBHOOK_PATH } from '../helpers/servers';

const delivery = () => signedDelivery({ event: 'dispatch.completed', secret: SECRET });
const json = (body: string) => ({ headers: { 'content-type': 'application/json' }, body });

/** Listens on 127.0.0.1, runs `test` with the app's base URL, and closes the app whatever happened. */
async function whileServing(app: ReturnType<typeof fastify5>, test: (base: string) => Promise<void>): Promise<void> {
  try {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as { port: number };
    await test(`http://127.0.0.1:${port}`);
  } finally {
    await app.close();
  }
}

describe.each([
  ['Fastify 5', fastify5],
  ['Fastify 4', fastify4 as unknown as typeof fastify5],
])('%s plugin', (_framework, fastify) => {
  it("leaves the app's other routes their JSON parsing, in and out of the plugin's context", async () => {
    const { webhooks, runs } = recordingReceiver();
    const app = fastify();
    app.post('/orders', async (request) => ({ parsed: request.body }));
    await app.register(fastifyMitpoWebhooks, { webhooks, path: WEBHOOK_PATH });
    app.post('/refunds', async (request) => ({ parsed: request.body }));
    await whileServing(app, async (base) => {
      expect((await send(`${base}/orders`, json('{"id":7}'))).json).toEqual({ parsed: { id: 7 } });
      expect((await send(`${base}/refunds`, json('{"id":8}'))).json).toEqual({ parsed: { id: 8 } });
      expect((await send(`${base}${WEBHOOK_PATH}`, delivery())).status).toBe(200);
      expect(runs).toHaveLength(2);
      // A bad JSON body elsewhere is still Fastify's own 400, not ours.
      const bad = await send(`${base}/orders`, json('{'));
      expect(bad.status).toBe(400);
      expect(JSON.parse(bad.text)).toMatchObject({ statusCode: 400, error: 'Bad Request' });
    });
  });

  it('answers a Content-Type that is not a media type itself, in the order of the checks (405 before 415)', async () => {
    const { webhooks, runs } = recordingReceiver();
    const failures: string[] = [];
    webhooks.onFailure((error) => failures.push(error.code));
    const app = fastify();
    await app.register(fastifyMitpoWebhooks, { webhooks, path: WEBHOOK_PATH });
    await whileServing(app, async (base) => {
      const notMediaType = { ...delivery(), headers: { ...delivery().headers, 'Content-Type': 'json' } };
      const put = await send(`${base}${WEBHOOK_PATH}`, { ...notMediaType, method: 'PUT' });
      expect([put.status, put.json.error?.code, put.headers.allow]).toEqual([405, 'method_not_allowed', 'POST']);
      const post = await send(`${base}${WEBHOOK_PATH}`, notMediaType);
      expect([post.status, post.json.error?.code]).toEqual([415, 'unsupported_media_type']);
      expect(failures).toEqual(['method_not_allowed', 'unsupported_media_type']);
      expect(runs).toHaveLength(0);
    });
  });

  // Found in a hunt: whether the pipeline would refuse it was learned by building its refusal,
  // message and all, then thrown away, so the pipeline cleaned the sender's text a second time.
  it('builds the refusal of a Content-Type that is not a media type once', async () => {
    const { webhooks } = recordingReceiver();
    const app = fastify();
    await app.register(fastifyMitpoWebhooks, { webhooks, path: WEBHOOK_PATH });
    const cleaning = jest.spyOn(sanitizing, 'sanitizeText');
    try {
      await whileServing(app, async (base) => {
        const notMediaType = { ...delivery(), headers: { ...delivery().headers, 'Content-Type': 'not-a-media-type' } };
        expect((await send(`${base}${WEBHOOK_PATH}`, notMediaType)).status).toBe(415);
        expect(cleaning.mock.calls.filter(([text]) => text === 'not-a-media-type')).toHaveLength(1);
      });
    } finally {
      cleaning.mockRestore();
    }
  });

  it("leaves an error the app's own hook raises on the route to the app, whatever its code", async () => {
    const { webhooks, runs } = recordingReceiver();
    const app = fastify();
    // An app hook refusing with the very code Fastify uses for a bad Content-Type.
    app.addHook('preHandler', async () => {
      throw Object.assign(new Error('refused by the app'), { code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', statusCode: 403 });
    });
    app.setErrorHandler((error, _request, reply) => reply.code(418).send({ app: (error as Error).message }));
    await app.register(fastifyMitpoWebhooks, { webhooks, path: WEBHOOK_PATH });
    await whileServing(app, async (base) => {
      const reply = await send(`${base}${WEBHOOK_PATH}`, delivery());
      expect([reply.status, reply.text]).toEqual([418, '{"app":"refused by the app"}']);
      expect(runs).toHaveLength(0);
    });
  });

  it('passes the log options it is registered with on to its route', async () => {
    const lines: string[] = [];
    const app = fastify({ logger: { level: 'info', stream: { write: (line: string) => lines.push(line) } } });
    await app.register(fastifyMitpoWebhooks, { webhooks: recordingReceiver().webhooks, path: WEBHOOK_PATH, logLevel: 'silent' });
    app.post('/orders', async () => ({ ok: true }));
    await whileServing(app, async (base) => {
      lines.length = 0;
      expect((await send(`${base}${WEBHOOK_PATH}`, delivery())).status).toBe(200);
      expect(lines).toEqual([]);
      expect((await send(`${base}/orders`, json('{}'))).status).toBe(200);
      expect(lines.length).toBeGreaterThan(0);
    });
  });

  it('verifies the bytes a raw-body plugin kept as request.rawBody', async () => {
    const { webhooks, runs } = recordingReceiver();
    const app = fastify();
    // What fastify-raw-body does: read the stream in preParsing, keep the text, hand on an empty stream.
    app.addHook('preParsing', async (request, _reply, payload) => {
      const chunks: Buffer[] = [];
      for await (const chunk of payload) chunks.push(chunk as Buffer);
      (request as unknown as { rawBody: string }).rawBody = Buffer.concat(chunks).toString('utf8');
      return Readable.from([]);
    });
    await app.register(fastifyMitpoWebhooks, { webhooks, path: WEBHOOK_PATH });
    await whileServing(app, async (base) => {
      expect((await send(`${base}${WEBHOOK_PATH}`, delivery())).json).toEqual({ success: true });
      expect(runs).toHaveLength(2);
      const tampered = delivery();
      const reply = await send(`${base}${WEBHOOK_PATH}`, { ...tampered, body: tampered.body.replace('dsp_', 'dsq_') });
      expect(reply.json.error?.code).toBe('invalid_signature');
    });
  });

  it('serves its path as given: a trailing slash is part of the route, as in any Fastify route', async () => {
    const { webhooks, runs } = recordingReceiver();
    const app = fastify();
    await app.register(fastifyMitpoWebhooks, { webhooks, path: `${WEBHOOK_PATH}/` });
    await whileServing(app, async (base) => {
      expect((await send(`${base}${WEBHOOK_PATH}/`, delivery())).status).toBe(200);
      expect(runs).toHaveLength(2);
    });
  });

  it('serves under the prefix it is registered with, and as a CommonJS module object', async () => {
    const { webhooks, runs } = recordingReceiver();
    const app = fastify();
    // require('mitpo-webhooks/fastify') hands Fastify the module; it registers its default export.
    const asRequired = fastifyEntry as unknown as typeof fastifyMitpoWebhooks;
    await app.register(asRequired, { webhooks, path: '/mitpo', prefix: '/hooks' });
    await whileServing(app, async (base) => {
      expect((await send(`${base}/hooks/mitpo`, delivery())).status).toBe(200);
      expect(runs).toHaveLength(2);
    });
  });

  it.each([
    [{ path: WEBHOOK_PATH }, /fastifyMitpoWebhooks needs webhooks: a MitpoWebhooks instance/],
    [{ webhooks: {}, path: WEBHOOK_PATH }, /fastifyMitpoWebhooks needs webhooks: a MitpoWebhooks instance/],
    [{ webhooks: 'receiver', path: WEBHOOK_PATH }, /needs webhooks: a MitpoWebhooks/],
    [{ webhooks: new MitpoWebhooks({ secret: SECRET }) }, /fastifyMitpoWebhooks path must be a string starting with "\/" \(got undefined\)/],
    [{ webhooks: new MitpoWebhooks({ secret: SECRET }), path: 'webhooks' }, /path must be a string starting with "\/"/],
    [{ webhooks: new MitpoWebhooks({ secret: SECRET }), path: '/x', secret: 'x' }, /unknown fastifyMitpoWebhooks option "secret"/],
  ])('refuses %p at start-up', async (options, message) => {
    const app = fastify();
    await expect(app.register(fastifyMitpoWebhooks, options as never).ready()).rejects.toThrow(message);
    await app.close();
  });
});

describe.each([
  ['Koa 3', Koa3],
  ['Koa 2', Koa2],
])('%s middleware', (_framework, Koa) => {
  function appWith(...middleware: Koa3.Middleware[]) {
    const app = new Koa();
    app.silent = true; // the parser's 400 is expected here, not worth a stack trace
    for (const m of middleware) app.use(m);
    app.use((ctx) => {
      ctx.body = { parsed: (ctx.request as { body?: unknown }).body ?? null, path: ctx.path };
    });
    return listen(http.createServer(app.callback()));
  }

  it('verifies the bytes @koa/bodyparser kept when mounted behind it; what the parser refuses, it answers', async () => {
    const { webhooks, runs } = recordingReceiver();
    const server = await appWith(bodyParser(), koaMitpoWebhooks(webhooks, { path: WEBHOOK_PATH }) as Koa3.Middleware);
    try {
      expect((await send(server.url, delivery())).json).toEqual({ success: true });
      expect(runs).toHaveLength(2);
      const forged = signedDelivery({ event: 'dispatch.completed', secret: 'whsec_not_the_one_we_hold' });
      expect((await send(server.url, forged)).json.error?.code).toBe('invalid_signature');
      const notJson = await send(server.url, { ...delivery(), body: '{not json' });
      expect(notJson.status).toBe(400);
      expect(notJson.text).toBe('Bad Request');
      expect(runs).toHaveLength(2);
    } finally {
      await server.close();
    }
  });

  it("mounted first, reads the body itself and leaves other paths their parser's JSON", async () => {
    const { webhooks, runs } = recordingReceiver();
    const server = await appWith(koaMitpoWebhooks(webhooks, { path: WEBHOOK_PATH }) as Koa3.Middleware, bodyParser());
    try {
      expect((await send(`${server.url}/?attempt=1`, delivery())).status).toBe(200);
      expect(runs).toHaveLength(2);
      const other = await send(server.url.replace(WEBHOOK_PATH, '/orders'), json('{"id":7}'));
      expect(other.json).toEqual({ parsed: { id: 7 }, path: '/orders' });
    } finally {
      await server.close();
    }
  });

  it('serves a route of @koa/router without a path, every method coming to the checks', async () => {
    const { webhooks, runs } = recordingReceiver();
    const router = new Router();
    router.all(WEBHOOK_PATH, koaMitpoWebhooks(webhooks) as Koa3.Middleware);
    const app = new Koa();
    app.use(router.routes());
    const server = await listen(http.createServer(app.callback()));
    try {
      expect((await send(server.url, delivery())).json).toEqual({ success: true });
      const put = await send(server.url, { ...delivery(), method: 'PUT' });
      expect([put.status, put.headers.allow]).toEqual([405, 'POST']);
      expect(runs).toHaveLength(2);
    } finally {
      await server.close();
    }
  });

  it('refuses a bad receiver or option when created', () => {
    expect(() => koaMitpoWebhooks({} as never)).toThrow(/koaMitpoWebhooks needs webhooks: a MitpoWebhooks instance/);
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    expect(() => koaMitpoWebhooks(webhooks, { path: 'mitpo' })).toThrow(/koaMitpoWebhooks path must be a string starting with "\/"/);
    expect(() => koaMitpoWebhooks(webhooks, { pth: '/x' } as never)).toThrow(/unknown koaMitpoWebhooks option "pth"/);
  });
});


it.each([
  ['Fastify 5 plugin', ['request.rawBody', 'preParsing']],
  ['Fastify 4 plugin', ['request.rawBody', 'preParsing']],
  ['Koa 3 middleware', ['Mount koaMitpoWebhooks before the body parser', 'ctx.request.rawBody']],
  ['Koa 2 middleware', ['Mount koaMitpoWebhooks before the body parser', 'ctx.request.rawBody']],
] as const)('%s names its own fix when something ahead of it consumed the body', async (mounting, fragments) => {
  const server = await mount(mounting, recordingReceiver().webhooks, { jsonParserFirst: true });
  try {
    const reply = await send(server.url, delivery());
    expect(reply.status).toBe(500);
    expect(reply.json.error?.code).toBe('body_already_parsed');
    for (const fragment of fragments) expect(reply.json.error?.message).toContain(fragment);
  } finally {
    await server.close();
  }
});

it('Fastify 5: a QUERY without a Content-Type gets the table\'s 405, not Fastify\'s own 400', async () => {
  const { webhooks, runs } = recordingReceiver();
  const app = fastify5();
  await app.register(fastifyMitpoWebhooks, { webhooks, path: WEBHOOK_PATH });
  await whileServing(app, async (base) => {
    const reply = await send(`${base}${WEBHOOK_PATH}`, { method: 'QUERY', headers: {}, body: '' });
    expect([reply.status, reply.json.error?.code, reply.headers.allow]).toEqual([405, 'method_not_allowed', 'POST']);
    expect(runs).toHaveLength(0);
  });
});

// Found in a hunt: an adapter mounted on the wrong framework failed on every request with a
// TypeError about properties of undefined, or (Connect middleware on Koa) answered Koa's 404 and
// then ended the process with an unhandled rejection.
describe('an adapter mounted on the wrong framework', () => {
  const CONNECT_ON_KOA = /webhooks\.middleware\(\) is Connect\/Express middleware.*koaMitpoWebhooks/;

  it.each([
    ['Koa 3', Koa3],
    ['Koa 2', Koa2],
  ])('webhooks.middleware() on %s: a TypeError naming koaMitpoWebhooks, and no unhandled rejection', async (_framework, Koa) => {
    const { webhooks, runs } = recordingReceiver();
    const errors: Error[] = [];
    const app = new Koa();
    app.silent = true;
    app.on('error', (error: Error) => errors.push(error));
    app.use(webhooks.middleware() as never);
    const server = await listen(http.createServer(app.callback()));
    try {
      expect((await send(server.url, delivery())).status).toBe(500);
      expect(errors).toEqual([expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(CONNECT_ON_KOA) })]);
      expect(runs).toHaveLength(0);
    } finally {
      await server.close();
    }
  });

  it('webhooks.middleware() registered as a Fastify plugin: a TypeError naming the Fastify plugin, when the app starts', async () => {
    const app = fastify5();
    await expect(app.register(recordingReceiver().webhooks.middleware() as never).ready()).rejects.toThrow(/fastifyMitpoWebhooks/);
    await app.close();
  });

  it.each([
    ['Express 5', express],
    ['Express 4', express4 as unknown as typeof express],
  ])('koaMitpoWebhooks() on %s: a TypeError naming webhooks.middleware()', async (_framework, makeApp) => {
    const { webhooks, runs } = recordingReceiver();
    const errors: Error[] = [];
    const app = makeApp();
    app.post(WEBHOOK_PATH, koaMitpoWebhooks(webhooks) as never);
    app.use((error: Error, _req: unknown, res: { status: (code: number) => { end: () => void } }, _next: unknown) => {
      errors.push(error);
      res.status(500).end();
    });
    const server = await listen(http.createServer(app));
    try {
      expect((await send(server.url, delivery())).status).toBe(500);
      expect(errors).toEqual([expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/koaMitpoWebhooks\(\) is Koa middleware.*webhooks\.middleware\(\)/) })]);
      expect(runs).toHaveLength(0);
    } finally {
      await server.close();
    }
  });

  it('webhooks.middleware mounted without calling it: a TypeError saying to call it', async () => {
    const { webhooks, runs } = recordingReceiver();
    const errors: Error[] = [];
    const app = express();
    app.post(WEBHOOK_PATH, webhooks.middleware as never);
    app.use((error: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      errors.push(error);
      res.status(500).end();
    });
    const server = await listen(http.createServer(app));
    try {
      expect((await send(server.url, delivery())).status).toBe(500);
      expect(errors).toEqual([expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/call webhooks\.middleware\(\)/) })]);
      expect(runs).toHaveLength(0);
    } finally {
      await server.close();
    }
  });

  it.each(['fetchHandler', 'receive', 'verify'] as const)('webhooks.%s taken off its receiver: a TypeError saying to call it on the receiver', async (method) => {
    const { webhooks, runs } = recordingReceiver();
    const detached = webhooks[method] as unknown as (input: unknown) => unknown;
    const { body, headers } = delivery();
    await expect(async () => detached(method === 'fetchHandler' ? undefined : { rawBody: body, headers })).rejects.toThrow(
      new RegExp(`webhooks\\.${method} was called without its receiver`),
    );
    expect(runs).toHaveLength(0);
  });
});

