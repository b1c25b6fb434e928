import http from 'node:http';
import express from 'express';
import { MitpoWebhooks } from '../../src';
import { signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';
import { deferred, SECRET } from '../helpers/recorder';
import { listen } from '../helpers/servers';

describe("the middleware's path under an Express mount", () => {
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

// Found in a mutation hunt: nothing answered before the middleware did. A timeout middleware
// (connect-timeout) may answer while the handlers run; the middleware must then write nothing,
// where writing would throw ERR_HTTP_HEADERS_SENT out of its promise chain.
describe('the middleware behind one that answered first', () => {
  it('writes nothing once another middleware answered while the handlers ran', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const handling = deferred();
    const release = deferred();
    const handled = deferred();
    webhooks.onAny(async () => {
      handling.resolve();
      await release.promise;
      handled.resolve();
    });
    let timedOut = () => {};
    const lateWrites: number[] = [];
    const app = express();
    app.use((_req, res, next) => {
      timedOut = () => {
        res.status(503).end();
        const writeHead = res.writeHead.bind(res) as (status: number) => typeof res;
        res.writeHead = ((status: number) => (lateWrites.push(status), writeHead(status))) as typeof res.writeHead;
      };
      next();
    });
    app.post('/webhooks/mitpo', webhooks.middleware());
    const server = await listen(http.createServer(app));
    try {
      const reply = send(server.url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }));
      await handling.promise;
      timedOut();
      expect((await reply).status).toBe(503);
      release.resolve();
      await handled.promise;
      // The delivery is completed and answered in microtasks after its handler returns.
      await new Promise((resolve) => setImmediate(resolve));
      expect(lateWrites).toEqual([]);
    } finally {
      await server.close();
    }
  });
});
