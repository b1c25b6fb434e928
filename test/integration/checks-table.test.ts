import http from 'node:http';
import { CHECK_CASES, expectAnswer } from '../helpers/check-cases';
import { send } from '../helpers/http-client';
import { deferred, recordingReceiver } from '../helpers/recorder';
import { MOUNTINGS, mount, type MountingName } from '../helpers/servers';
import { signedDelivery } from '../../src/testing';
import { SECRET } from '../helpers/recorder';

describe.each(Object.keys(MOUNTINGS) as MountingName[])('the checks table, mounted as %s', (mounting) => {
  it.each(CHECK_CASES)('$name → $status $outcome', async (check) => {
    const { webhooks, runs } = recordingReceiver(check.options);
    check.setup?.(webhooks);
    const server = await mount(mounting, webhooks, { jsonParserFirst: check.jsonParserFirst });
    try {
      const spec = check.request();
      const request = { method: spec.method ?? 'POST', headers: spec.headers, body: spec.body };
      if (check.sendTwice) expect((await send(server.url, request)).status).toBe(200);
      const reply = await send(server.url, request);

      expectAnswer(check, reply);
      expect(runs).toHaveLength(check.runs);
    } finally {
      await server.close();
    }
  });

  it('answers 409 in_flight to the same delivery while its handlers still run, and runs them once', async () => {
    const { webhooks, runs } = recordingReceiver();
    const gate = deferred();
    const entered = deferred();
    webhooks.on('dispatch.completed', async () => {
      entered.resolve();
      await gate.promise;
    });
    const server = await mount(mounting, webhooks);
    try {
      const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      const first = send(server.url, { headers, body });
      await entered.promise;
      const second = await send(server.url, { headers, body });
      expect(second.status).toBe(409);
      expect(second.json.error?.code).toBe('in_flight');
      gate.resolve();
      expect((await first).status).toBe(200);
      expect(runs.filter((r) => r.handler === 'onAny')).toHaveLength(1);
    } finally {
      await server.close();
    }
  });

  it('answers 503 shutting_down with Retry-After once close() was called, and runs nothing', async () => {
    const { webhooks, runs } = recordingReceiver();
    const server = await mount(mounting, webhooks);
    try {
      await webhooks.close();
      const reply = await send(server.url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }));
      expect(reply.status).toBe(503);
      expect(reply.json.error?.code).toBe('shutting_down');
      expect(reply.headers['retry-after']).toMatch(/^\d+$/);
      expect(runs).toHaveLength(0);
    } finally {
      await server.close();
    }
  });

  it('refuses on the headers alone, without waiting for a body that never comes', async () => {
    const { webhooks, runs } = recordingReceiver();
    const server = await mount(mounting, webhooks);
    try {
      // Content-Length promises 5000 bytes that are never sent: an answer can only
      // come from checks that ran before the body was read.
      const reply = await new Promise<number>((resolve, reject) => {
        const req = http.request(server.url, {
          method: 'POST',
          agent: false,
          headers: { 'content-type': 'application/json', 'content-length': '5000', 'x-mitpo-timestamp': '1' },
        });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.flushHeaders();
      });
      expect(reply).toBe(400);
      expect(runs).toHaveLength(0);
    } finally {
      await server.close();
    }
  });
});
