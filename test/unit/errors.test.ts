import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { MitpoWebhooks, WebhookVerificationError } from '../../src';
import { signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';
import { SECRET } from '../helpers/recorder';

describe("a refusal's stack", () => {
  it('is its first line only, with no frames', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const error = await webhooks.verify(signedDelivery({ event: 'dispatch.completed', secret: 'whsec_someone_else' }) as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WebhookVerificationError);
    const { stack, message } = error as WebhookVerificationError;
    expect(stack).toBe(`WebhookVerificationError: ${message}`);
    expect(stack).not.toMatch(/\n\s+at /);
  });

  it("shows a forged request nothing of the install through Express's default error handler", async () => {
    const app = express();
    app.post('/webhooks/mitpo', new MitpoWebhooks({ secret: SECRET }).middleware({ passErrors: true }));
    const server = http.createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      // Jest runs with NODE_ENV=test: outside production, Express's final handler prints err.stack.
      expect(process.env.NODE_ENV).not.toBe('production');
      const reply = await send(`http://127.0.0.1:${port}/webhooks/mitpo`, signedDelivery({ event: 'dispatch.completed', secret: 'whsec_someone_else' }));
      expect(reply.status).toBe(401);
      expect(reply.text).toContain('WebhookVerificationError: X-MITPO-Signature does not match');
      expect(reply.text).not.toMatch(/ at |node_modules|\/src\//);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("keeps the handler's own error, stack and all, as the cause of handler_failed", async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    webhooks.onAny(function failingHandler() {
      throw new Error('the database is down');
    });
    const told: WebhookVerificationError[] = [];
    webhooks.onFailure((error) => told.push(error));
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(500);
    expect(told[0]!.code).toBe('handler_failed');
    expect((told[0]!.cause as Error).stack).toMatch(/the database is down\n\s+at failingHandler/);
  });
});

describe('building a refusal', () => {
  it('leaves Error.stackTraceLimit as it found it, also when the message cannot be made text', () => {
    const before = Error.stackTraceLimit;
    const notText = {
      toString() {
        throw new TypeError('not text');
      },
    };
    expect(() => new WebhookVerificationError('invalid_json', notText as never)).toThrow('not text');
    expect(Error.stackTraceLimit).toBe(before);
    expect(new WebhookVerificationError('invalid_json', 'x').stack).toBe('WebhookVerificationError: x');
    expect(Error.stackTraceLimit).toBe(before);
    expect(new Error('probe').stack).toMatch(/\n\s+at /);
  });
});

describe("a refusal's message shown to the client (expose)", () => {
  // Koa shows `message` when `expose` is true; a 5xx's message is about our side, not the request.
  it('is exposed for every 4xx and for no 5xx', () => {
    for (const code of ['invalid_signature', 'payload_too_large', 'handler_failed', 'internal_error', 'body_already_parsed', 'queue_unavailable'] as const) {
      const error = new WebhookVerificationError(code, 'x');
      expect({ code, expose: error.expose }).toEqual({ code, expose: error.status < 500 });
    }
  });
});
