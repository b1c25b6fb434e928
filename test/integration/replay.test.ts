import { MemoryReplayStore } from '../../src';
import { signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';
import { recordingReceiver, SECRET } from '../helpers/recorder';
import { mount } from '../helpers/servers';

const NOW = () => Math.floor(Date.now() / 1000);

async function withReceiver(
  options: Parameters<typeof recordingReceiver>[0],
  run: (url: string, receiver: ReturnType<typeof recordingReceiver>) => Promise<void>,
) {
  const receiver = recordingReceiver(options);
  const server = await mount('Express 5 route', receiver.webhooks);
  try {
    await run(server.url, receiver);
  } finally {
    await server.close();
  }
}

describe('replay protection over HTTP', () => {
  it('answers a repeated delivery 200 duplicate without running the handlers again', async () => {
    await withReceiver({}, async (url, { runs }) => {
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect((await send(url, delivery)).json).toEqual({ success: true });
      expect((await send(url, delivery)).json).toEqual({ success: true, duplicate: true });
      expect((await send(url, delivery)).json).toEqual({ success: true, duplicate: true });
      expect(runs.map((r) => r.handler)).toEqual(['on(dispatch.completed)', 'onAny']);
    });
  });

  it('leaves a delivery whose handler failed retryable: the identical retry runs the handlers again', async () => {
    await withReceiver({}, async (url, { webhooks, runs }) => {
      let attempts = 0;
      webhooks.on('dispatch.failed', async () => {
        attempts += 1;
        if (attempts === 1) throw new Error('temporary outage');
      });
      const delivery = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
      const first = await send(url, delivery);
      expect(first.status).toBe(500);
      expect(first.json.error?.code).toBe('handler_failed');
      const retry = await send(url, delivery);
      expect(retry.json).toEqual({ success: true });
      expect(attempts).toBe(2);
      expect(runs.filter((r) => r.handler === 'onAny')).toHaveLength(2);
      expect((await send(url, delivery)).json).toEqual({ success: true, duplicate: true });
      expect(attempts).toBe(2);
    });
  });

  it('runs the handlers once when the same delivery arrives several times at once', async () => {
    await withReceiver({}, async (url, { webhooks }) => {
      let runsOfSlowHandler = 0;
      webhooks.on('dispatch.accepted', async () => {
        runsOfSlowHandler += 1;
        await new Promise((resolve) => setImmediate(resolve));
      });
      const delivery = signedDelivery({ event: 'dispatch.accepted', secret: SECRET });
      const replies = await Promise.all(Array.from({ length: 8 }, () => send(url, delivery)));
      expect(runsOfSlowHandler).toBe(1);
      const statuses = replies.map((r) => r.status);
      expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(1);
      // Every other copy was either in flight (409, MITPO retries) or already done (200 duplicate).
      for (const reply of replies) {
        expect(reply.status === 409 ? reply.json.error?.code : reply.json.success).toBeTruthy();
      }
    });
  });

  it('refuses a captured delivery re-sent with a forged fresh X-MITPO-Timestamp', async () => {
    // Captured three days and a minute ago, as MITPO sent it then.
    const sentThen = NOW() - 259_200 - 60;
    const captured = signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp: sentThen, sentAt: sentThen });
    const forged = { body: captured.body, headers: { ...captured.headers, 'X-MITPO-Timestamp': String(NOW()) } };

    // A receiver that never saw it (its replay store is fresh): the signed body timestamp gives it away.
    await withReceiver({}, async (url, { runs }) => {
      const reply = await send(url, forged);
      expect(reply.status).toBe(401);
      expect(reply.json.error?.code).toBe('event_too_old');
      expect(runs).toHaveLength(0);
    });

    // Captured recently instead: the body is still fresh, but the store remembers it.
    const recent = signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp: NOW() - 3600, sentAt: NOW() - 3600 });
    const store = new MemoryReplayStore();
    await withReceiver({ replay: store, tolerance: 4000 }, async (url) => {
      expect((await send(url, recent)).json).toEqual({ success: true });
    });
    await withReceiver({ replay: store }, async (url, { runs }) => {
      const reply = await send(url, { body: recent.body, headers: { ...recent.headers, 'X-MITPO-Timestamp': String(NOW()) } });
      expect(reply.json).toEqual({ success: true, duplicate: true });
      expect(runs).toHaveLength(0);
    });
  });

  it('with replay: false, runs the handlers for every copy', async () => {
    await withReceiver({ replay: false }, async (url, { runs }) => {
      const delivery = signedDelivery({ event: 'connection.active', secret: SECRET });
      expect((await send(url, delivery)).json).toEqual({ success: true });
      expect((await send(url, delivery)).json).toEqual({ success: true });
      expect(runs.filter((r) => r.handler === 'onAny')).toHaveLength(2);
    });
  });
});
