import http from 'node:http';
import express from 'express';
import { MitpoWebhooks } from '../../src';
import { signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';
import { SECRET } from '../helpers/recorder';
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
