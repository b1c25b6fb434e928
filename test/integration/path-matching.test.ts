import http from 'node:http';
import type { AddressInfo } from 'node:net';
import connect from 'connect';
import express5 from 'express';
import express4 from 'express4';
import Koa3 from 'koa';
import { MitpoWebhooks } from '../../src';
import { koaMitpoWebhooks } from '../../src/koa';
import { signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';
import { rawSocket, requestHead } from '../helpers/raw-socket';
import { SECRET } from '../helpers/recorder';

// `path` is matched the way Express and NestJS route by default: without regard
// to case, with or without one trailing slash. Matched more strictly, a spelling
// such as /Webhooks/MITPO/ would skip the verifying middleware and reach the
// app's next route unverified.
// The absolute form (a full URL in the request line) is one more spelling: Node passes it on
// as sent, and Express and Connect route it by its path. So is a backslash: where a URL has a
// `#` or is in the absolute form, Express and Connect read it with url.parse, which takes `\`
// for `/`.
const SPELLINGS = [
  '/webhooks/mitpo',
  '/Webhooks/Mitpo',
  '/WEBHOOKS/MITPO/',
  '/webhooks/mitpo/?x=1',
  '/webhooks/mitpo#x',
  '/webhooks/mitpo/#',
  '/Webhooks/Mitpo?#',
  'http://127.0.0.1/webhooks/mitpo',
  'HTTPS://Example.COM:8443/Webhooks/MITPO/?x=1',
  '/webhooks\\mitpo#',
  '/webhooks/mitpo\\#',
  '/Webhooks\\MITPO\\?x=1#',
  'http://127.0.0.1/webhooks\\mitpo',
  '//x@y/webhooks/mitpo#',
  '//x@y/Webhooks/MITPO/?a#',
  '/webhooks//mitpo',
  '/webhooks//x@y/mitpo#',
  '/webhooks\\\\x@y/mitpo#',
];

type Handler = http.RequestListener;

async function serve(handler: Handler): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** A forged delivery: well-formed, signed with another secret. Only the verifying middleware refuses it (401). */
const forged = () => signedDelivery({ event: 'dispatch.completed', secret: 'whsec_not_the_receivers' });

function express(create: typeof express5 | typeof express4, mount: 'app' | 'under /webhooks', next: 'app.post' | 'a Router at /webhooks' = 'app.post'): Handler {
  const app = create();
  const webhooks = new MitpoWebhooks({ secret: SECRET });
  if (mount === 'app') app.use(webhooks.middleware({ path: '/webhooks/mitpo' }));
  else app.use('/webhooks', webhooks.middleware({ path: '/webhooks/mitpo' }));
  // The app's next route, which takes any spelling Express routes to it: at the path, or
  // at its last segment in a Router mounted at the first (Express cuts the mount path off
  // the raw URL and reads what is left again).
  const reached = (_req: unknown, res: express5.Response) => void res.status(418).send('reached the next route');
  if (next === 'app.post') app.post('/webhooks/mitpo', reached);
  else app.use('/webhooks', create.Router().post('/mitpo', reached));
  return app as unknown as Handler;
}

const MOUNTINGS: Array<[string, () => Handler]> = [
  ['Express 5, app.use', () => express(express5, 'app')],
  ['Express 5, under app.use("/webhooks")', () => express(express5, 'under /webhooks')],
  ['Express 4, app.use', () => express(express4, 'app')],
  ['Express 5, app.use, the route in a Router at /webhooks', () => express(express5, 'app', 'a Router at /webhooks')],
  ['Express 5, under app.use("/webhooks"), the route in a Router at /webhooks', () => express(express5, 'under /webhooks', 'a Router at /webhooks')],
  ['Express 4, app.use, the route in a Router at /webhooks', () => express(express4, 'app', 'a Router at /webhooks')],
  [
    'Connect',
    () => {
      const app = connect();
      app.use(new MitpoWebhooks({ secret: SECRET }).middleware({ path: '/webhooks/mitpo' }));
      app.use((_req: http.IncomingMessage, res: http.ServerResponse) => res.writeHead(418).end('reached the next route'));
      return app as unknown as Handler;
    },
  ],
  [
    'Koa 3',
    () => {
      const app = new Koa3();
      app.use(koaMitpoWebhooks(new MitpoWebhooks({ secret: SECRET }), { path: '/webhooks/mitpo' }) as Koa3.Middleware);
      app.use((ctx) => {
        ctx.status = 418;
      });
      return app.callback();
    },
  ],
];

describe.each(MOUNTINGS)('middleware({ path }) on %s', (_name, mount) => {
  it.each(SPELLINGS)('verifies %s, whatever its case, trailing slash, query or fragment', async (spelling) => {
    const server = await serve(mount());
    try {
      // Sent as written: a client library would drop a fragment, a hostile sender need not.
      const { body, headers } = forged();
      const socket = rawSocket(`${server.url}/`);
      await socket.connected;
      await socket.write(requestHead(spelling, { ...headers, 'Content-Length': String(Buffer.byteLength(body)), Connection: 'close' }) + body);
      expect(await socket.status()).toBe(401);
      await socket.closed;
      expect(socket.received()).toContain('"code":"invalid_signature"');
    } finally {
      await server.close();
    }
  });

  it('leaves a path that only starts like it to the app', async () => {
    const server = await serve(mount());
    try {
      expect((await send(`${server.url}/webhooks/mitpo-other`, forged())).status).not.toBe(401);
      expect((await send(`${server.url}/webhooks/mitpo/extra`, forged())).status).not.toBe(401);
    } finally {
      await server.close();
    }
  });
});
