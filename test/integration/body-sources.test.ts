import http from 'node:http';
import express5 from 'express';
import express4 from 'express4';
import { sampleData, signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';
import { recordingReceiver, SECRET } from '../helpers/recorder';
import { listen, WEBHOOK_PATH } from '../helpers/servers';

const EXPRESSES = { 'Express 5': express5, 'Express 4': express4 } as const;

describe.each(Object.keys(EXPRESSES) as Array<keyof typeof EXPRESSES>)('where the raw body comes from, under %s', (name) => {
  const express = EXPRESSES[name];

  async function withApp(
    mountParsers: (app: ReturnType<typeof express5>) => void,
    run: (url: string, runs: unknown[]) => Promise<void>,
    options: Parameters<typeof recordingReceiver>[0] = {},
  ) {
    const { webhooks, runs } = recordingReceiver(options);
    const app = express();
    mountParsers(app as unknown as ReturnType<typeof express5>);
    app.post(WEBHOOK_PATH, webhooks.middleware());
    const server = await listen(http.createServer(app));
    try {
      await run(server.url, runs);
    } finally {
      await server.close();
    }
  }

  it('verifies a body that express.raw() kept as a Buffer', async () => {
    await withApp(
      (app) => app.use(express.raw({ type: 'application/json' })),
      async (url, runs) => {
        const { body, headers } = signedDelivery({ event: 'dispatch.accepted', secret: SECRET });
        expect((await send(url, { headers, body })).status).toBe(200);
        expect(runs).toHaveLength(2);
      },
    );
  });

  it("answers 413 to a body express.raw() kept that is past the receiver's limit, its own limit larger", async () => {
    await withApp(
      (app) => app.use(express.raw({ type: 'application/json', limit: '1mb' })),
      async (url, runs) => {
        const padded = Object.assign(sampleData('dispatch.accepted'), { padding: 'x'.repeat(2048) });
        const { body, headers } = signedDelivery({ event: 'dispatch.accepted', secret: SECRET, data: padded });
        const reply = await send(url, { headers, body });
        expect({ status: reply.status, code: reply.json?.error?.code }).toEqual({ status: 413, code: 'payload_too_large' });
        expect(runs).toHaveLength(0);
      },
      { limit: 1024 },
    );
  });

  it('verifies a body of exactly limit bytes, its Content-Length equal to the limit', async () => {
    const delivery = signedDelivery({ event: 'dispatch.accepted', secret: SECRET });
    await withApp(
      () => undefined,
      async (url, runs) => {
        const headers = { ...delivery.headers, 'Content-Length': String(Buffer.byteLength(delivery.body)) };
        expect((await send(url, { headers, body: delivery.body })).status).toBe(200);
        expect(runs).toHaveLength(2);
      },
      { limit: Buffer.byteLength(delivery.body) },
    );
  });

  it('verifies a body whose bytes express.json() kept in req.rawBody', async () => {
    await withApp(
      (app) =>
        app.use(
          express.json({
            verify: (req, _res, buf) => {
              (req as unknown as { rawBody: Buffer }).rawBody = buf;
            },
          }),
        ),
      async (url, runs) => {
        const { body, headers } = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
        expect((await send(url, { headers, body })).status).toBe(200);
        expect(runs).toHaveLength(2);
      },
    );
  });

  it('verifies a body that a text parser kept as a string, multi-byte characters included', async () => {
    await withApp(
      (app) => app.use(express.text({ type: 'application/json' })),
      async (url, runs) => {
        const { body, headers } = signedDelivery({
          event: 'dispatch.completed',
          secret: SECRET,
          data: { dispatch_id: 'dsp_ü', channel: 'メタ広告', status: 'completed 🎯' },
        });
        expect((await send(url, { headers, body })).status).toBe(200);
        expect(runs).toHaveLength(2);
      },
    );
  });

  it('answers 500 body_already_parsed at once when express.json() consumed the body, saying how to fix it', async () => {
    await withApp(
      (app) => app.use(express.json()),
      async (url, runs) => {
        const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
        const reply = await send(url, { headers, body });
        expect(reply.status).toBe(500);
        expect(reply.json.error?.code).toBe('body_already_parsed');
        expect(reply.json.error?.message).toMatch(/before express\.json\(\)/);
        expect(runs).toHaveLength(0);
      },
    );
  });

  it('reads the stream itself when a JSON parser skipped the request (no Content-Type), whatever req.body it left', async () => {
    await withApp(
      (app) => app.use(express.json()),
      async (url, runs) => {
        const { body, headers } = signedDelivery({ event: 'connection.active', secret: SECRET });
        const { 'Content-Type': _skipped, ...rest } = headers;
        expect((await send(url, { headers: rest, body })).status).toBe(200);
        expect(runs).toHaveLength(2);
      },
    );
  });
});

describe('bytes on the wire', () => {
  async function withServer(run: (url: string, runs: unknown[]) => Promise<void>, limit?: number) {
    const { webhooks, runs } = recordingReceiver(limit === undefined ? {} : { limit });
    const middleware = webhooks.middleware();
    const server = await listen(http.createServer((req, res) => middleware(req, res, () => res.end())));
    try {
      await run(server.url, runs);
    } finally {
      await server.close();
    }
  }

  it('verifies a body split across chunks in the middle of a multi-byte character', async () => {
    await withServer(async (url, runs) => {
      const { body, headers } = signedDelivery({
        event: 'dispatch.completed',
        secret: SECRET,
        data: { dispatch_id: 'dsp_€', channel: '渠道', status: 'completed', provider_resource_id: '😀' },
      });
      const bytes = Buffer.from(body, 'utf8');
      const euro = bytes.indexOf(Buffer.from('€'));
      const emoji = bytes.indexOf(Buffer.from('😀'));
      // Split after the first byte of the 3-byte euro sign and inside the 4-byte emoji.
      const chunks = [bytes.subarray(0, euro + 1), bytes.subarray(euro + 1, emoji + 2), bytes.subarray(emoji + 2)];
      const { 'Content-Type': contentType, ...rest } = headers;
      const reply = await send(url, { headers: { ...rest, 'Content-Type': contentType!, 'Transfer-Encoding': 'chunked' }, body: chunks });
      expect(reply.status).toBe(200);
      expect(runs).toHaveLength(2);
    });
  });

  it('answers 413 to a chunked body past the limit, with no Content-Length to go by', async () => {
    await withServer(async (url, runs) => {
      const { body, headers } = signedDelivery({
        event: 'dispatch.completed',
        secret: SECRET,
        data: { dispatch_id: 'dsp_1', channel: 'x'.repeat(4096), status: 'completed' },
      });
      const bytes = Buffer.from(body);
      const reply = await send(url, {
        headers: { ...headers, 'Transfer-Encoding': 'chunked' },
        body: [bytes.subarray(0, 1000), bytes.subarray(1000)],
      });
      expect(reply.status).toBe(413);
      expect(reply.json.error?.code).toBe('payload_too_large');
      expect(runs).toHaveLength(0);
    }, 1024);
  });
});
