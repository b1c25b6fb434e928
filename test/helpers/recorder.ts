import { MitpoWebhooks, type MitpoWebhooksOptions, type UnknownMitpoEvent, type MitpoEvent } from '../../src';

export const SECRET = 'whsec_test_a1b2c3d4e5f6';

/** A receiver that records every handler run, so tests can say which ran and how often. */
export function recordingReceiver(options: Partial<MitpoWebhooksOptions> = {}) {
  const runs: Array<{ handler: string; event: MitpoEvent | UnknownMitpoEvent; deliveryKey: string }> = [];
  const webhooks = new MitpoWebhooks({ secret: SECRET, ...options });
  webhooks.on(
    ['dispatch.accepted', 'dispatch.completed', 'dispatch.failed', 'connection.active', 'connection.reauth_required'],
    (event, ctx) => {
      runs.push({ handler: `on(${event.event})`, event, deliveryKey: ctx.deliveryKey });
    },
  );
  webhooks.onAny((event, ctx) => {
    runs.push({ handler: 'onAny', event, deliveryKey: ctx.deliveryKey });
  });
  return { webhooks, runs };
}

/** A promise with its resolver outside, to hold a handler mid-flight. */
export function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
