import { MitpoWebhooks, type MitpoWebhooksOptions } from '../../src';
import { signedDelivery } from '../../src/testing';
import { deliver } from '../helpers/deliver';
import { send } from '../helpers/http-client';
import { deferred, SECRET } from '../helpers/recorder';
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
