import { MitpoWebhooks, type MitpoWebhooksOptions } from '../../src';
import { signedDelivery } from '../../src/testing';
import { deliver } from '../helpers/deliver';
import { send } from '../helpers/http-client';
import { deferred, SECRET } from '../helpers/recorder';
import { waitFor } from '../helpers/redis';
import { mount, type RunningServer } from '../helpers/servers';

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
beforeAll(() => process.on('unhandledRejection', onUnhandled));
afterAll(() => process.off('unhandledRejection', onUnhandled));

let server: RunningServer;
afterEach(async () => {
  await server.close();
  expect(unhandled).toEqual([]);
});

async function start(options: Partial<MitpoWebhooksOptions>, setup: (webhooks: MitpoWebhooks) => void) {
  const webhooks = new MitpoWebhooks({ secret: SECRET, ...options });
  setup(webhooks);
  server = await mount('Express 5 route', webhooks);
}

describe('handler faults', () => {
  it.each([
    ['throws an Error synchronously', () => {
      throw new Error('sync');
    }],
    ['rejects', async () => Promise.reject(new Error('async'))],
    ['throws a string', () => {
      throw 'a string';
    }],
    ['throws undefined', () => {
      throw undefined;
    }],
    ['rejects with null', () => Promise.reject(null)],
    ['throws an object whose toString throws', () => {
      throw {
        toString() {
          throw new Error('nope');
        },
      };
    }],
    ['returns a thenable that rejects', () => ({ then: (_ok: unknown, fail: (e: unknown) => void) => fail(new Error('thenable')) })],
  ])('a handler that %s: 500 handler_failed, onError told, server stays up', async (_name, handler) => {
    const errors: Error[] = [];
    let fine = 0;
    await start({}, (webhooks) => {
      webhooks.on('dispatch.failed', handler as never);
      webhooks.on('dispatch.completed', () => void (fine += 1));
      webhooks.onError((error) => void errors.push(error));
    });
    const failing = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
    const reply = await send(server.url, failing);
    expect(reply.status).toBe(500);
    expect(reply.json.error?.code).toBe('handler_failed');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(Error);
    expect((await send(server.url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }))).status).toBe(200);
    expect(fine).toBe(1);
  });

  // Found by a hunt: the promise an async deliveryKey returned was never handled, and its
  // rejection ended the process (the 500 never reached the client).
  it('a deliveryKey function that returns a promise: 500 internal_error, its rejection handled, server stays up', async () => {
    const errors: Array<Record<string, unknown>> = [];
    const quiet = () => undefined;
    await start(
      {
        deliveryKey: (async () => Promise.reject(new Error('lookup failed'))) as never,
        logger: { debug: quiet, info: quiet, warn: quiet, error: (record) => void errors.push(record as Record<string, unknown>) },
      },
      (webhooks) => webhooks.onAny(() => undefined),
    );
    const reply = await send(server.url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }));
    expect(reply.status).toBe(500);
    expect(reply.json.error?.code).toBe('internal_error');
    expect(String((errors[0]?.err as Error | undefined)?.message)).toMatch(/deliveryKey option returned a promise; it must return the key itself/);
    await new Promise((resolve) => setImmediate(resolve));
  });

  // Found by a hunt: only onError heard it; the log said no more than "timed out".
  it('a handler that fails after handlerTimeout answered: its error is logged at error, as handler_failed', async () => {
    const gate = deferred();
    const errors: Array<[Record<string, unknown>, string]> = [];
    const quiet = () => undefined;
    await start(
      { handlerTimeout: 0.1, logger: { debug: quiet, info: quiet, warn: quiet, error: (record, message) => void errors.push([record as Record<string, unknown>, String(message)]) } },
      (webhooks) =>
        webhooks.on('dispatch.completed', async () => {
          await gate.promise;
          throw new Error('the CRM said no');
        }),
    );
    expect((await send(server.url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }))).json.error?.code).toBe('handler_timeout');
    gate.resolve();
    await waitFor(() => errors.length === 2);
    expect(errors[1]![0]).toMatchObject({ code: 'handler_failed', event: 'dispatch.completed', err: expect.objectContaining({ message: 'the CRM said no' }) });
    expect(errors[1]![1]).toMatch(/failed after handlerTimeout/);
  });

  it('a handler that never settles, with handlerTimeout: 503 handler_timeout, 409 while it runs, then done once', async () => {
    const gate = deferred();
    let started = 0;
    let finished = 0;
    await start({ handlerTimeout: 0.1, inFlightTtl: 60 }, (webhooks) =>
      webhooks.on('dispatch.completed', async () => {
        started += 1;
        await gate.promise;
        finished += 1;
      }),
    );
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const first = await send(server.url, delivery);
    expect(first.status).toBe(503);
    expect(first.json.error?.code).toBe('handler_timeout');
    // MITPO retries while the first run is still going: refused, not run a second time.
    const retry = await send(server.url, delivery);
    expect(retry.status).toBe(409);
    expect(started).toBe(1);
    gate.resolve();
    await gate.promise;
    await new Promise((resolve) => setImmediate(resolve));
    // Once it finished, the claim was completed: the next retry is a duplicate.
    expect((await send(server.url, delivery)).json).toEqual({ success: true, duplicate: true });
    expect([started, finished]).toEqual([1, 1]);
  });

  it('a timed-out handler that then fails releases its claim, so the next retry runs it again', async () => {
    const gate = deferred();
    let attempts = 0;
    await start({ handlerTimeout: 0.1, inFlightTtl: 60 }, (webhooks) =>
      webhooks.on('dispatch.failed', async () => {
        attempts += 1;
        if (attempts === 1) {
          await gate.promise;
          throw new Error('gave up');
        }
      }),
    );
    const delivery = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
    expect((await send(server.url, delivery)).status).toBe(503);
    gate.resolve();
    await new Promise((resolve) => setImmediate(resolve));
    expect((await send(server.url, delivery)).json).toEqual({ success: true });
    expect(attempts).toBe(2);
  });

  it('refuses durations that are not a positive number of seconds', () => {
    expect(() => new MitpoWebhooks({ secret: SECRET, handlerTimeout: 0 })).toThrow(/handlerTimeout must be a positive number of seconds/);
    expect(() => new MitpoWebhooks({ secret: SECRET, bodyTimeout: -1 })).toThrow(/bodyTimeout must be a positive number of seconds/);
    server = { url: '', close: async () => {} };
  });

  // A handler may throw a value that cannot even be converted to an Error (a revoked
  // Proxy): the claim must still be released, or every MITPO retry would be answered
  // 409 in_flight while the renewal keeps the claim alive, and the event be lost.
  it('lets a retry run the handlers after a handler threw an unconvertible value', async () => {
    server = { url: '', close: async () => {} };
    const webhooks = new MitpoWebhooks({ secret: SECRET, inFlightTtl: 0.06 });
    let runs = 0;
    webhooks.onAny(() => {
      runs += 1;
      if (runs === 1) {
        const { proxy, revoke } = Proxy.revocable({}, {});
        revoke();
        throw proxy;
      }
    });
    const delivery = signedDelivery({ event: 'connection.active', secret: SECRET });
    const first = await deliver(webhooks, delivery);
    expect(first.status).toBeGreaterThanOrEqual(500);
    // At once: a claim left behind would answer this retry 409 in_flight.
    const retry = await deliver(webhooks, delivery);
    expect(retry.body).toEqual({ success: true });
    expect(runs).toBe(2);
  });
});
