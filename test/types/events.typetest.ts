// Type-level tests: checked by `npm run typecheck` (tsc), never run. Each
// expect-error directive below fails the typecheck if its line stops being an error.
import express from 'express';
import {
  MitpoWebhooks,
  parseEvent,
  type MitpoEvent,
  type MitpoEventName,
  type MitpoEventOf,
  type UnknownMitpoEvent,
} from 'mitpo-webhooks';
import { expectType, type Equal } from './expect-type';

const webhooks = new MitpoWebhooks({ secret: 'whsec_x' });

expectType<Equal<MitpoEventName, 'dispatch.accepted' | 'dispatch.completed' | 'dispatch.failed' | 'connection.active' | 'connection.reauth_required'>>();

// Found by a hunt: the key was typed as required (`string | undefined`), where a parsed
// event without it has no such key, so an event built in a test had to spell it out.
export const withoutProviderResourceId: MitpoEventOf<'dispatch.completed'>['data'] = { dispatch_id: 'dsp_1', channel: 'email', status: 'completed' };

webhooks.on('dispatch.completed', (event, ctx) => {
  expectType<Equal<typeof event.event, 'dispatch.completed'>>();
  const id: string | undefined = event.data.provider_resource_id;
  const dispatchId: string = event.data.dispatch_id;
  const key: string = ctx.deliveryKey;
  const raw: Buffer = ctx.rawBody;
  const at: Date = ctx.receivedAt;
  // @ts-expect-error: dispatch events have no such field
  void event.data.provider_id;
  // @ts-expect-error: the event is narrowed, not the whole union
  void (event.event === 'connection.active');
  return [id, dispatchId, key, raw, at];
});

// @ts-expect-error: not an event MITPO sends
webhooks.on('dispatch.complete', () => {});

// @ts-expect-error: misspelt in an array too
webhooks.on(['dispatch.failed', 'connection.reauthorize'], () => {});

webhooks.on(['dispatch.failed', 'connection.reauth_required'], (event) => {
  expectType<Equal<typeof event, MitpoEventOf<'dispatch.failed'> | MitpoEventOf<'connection.reauth_required'>>>();
  if (event.event === 'dispatch.failed') {
    const channel: string = event.data.channel;
    void channel;
  } else {
    const data: Record<string, unknown> = event.data;
    void data;
  }
});

webhooks.onAny((event) => {
  expectType<Equal<typeof event, MitpoEvent | UnknownMitpoEvent>>();
  const name: string = event.event;
  void name;
});

webhooks.onError((error, event) => {
  const message: string = error.message;
  void [message, event.event];
});

// @ts-expect-error: tolerance is seconds as a number
new MitpoWebhooks({ secret: 'whsec_x', tolerance: '300' });

// @ts-expect-error: the secret is required
new MitpoWebhooks({});

new MitpoWebhooks({ secret: async () => ['whsec_a', 'whsec_b'], replay: false, limit: '1mb' });

// The middleware mounts on Express without casts.
const app = express();
app.post('/webhooks/mitpo', webhooks.middleware());
app.use(webhooks.middleware({ path: '/webhooks/mitpo' }));

// A switch on the discriminant narrows the union.
function describe(event: MitpoEvent): string {
  switch (event.event) {
    case 'dispatch.completed':
      return event.data.provider_resource_id ?? event.data.dispatch_id;
    case 'dispatch.accepted':
    case 'dispatch.failed':
      return event.data.status;
    case 'connection.active':
    case 'connection.reauth_required':
      return Object.keys(event.data).join(',');
    default: {
      const exhaustive: never = event;
      return exhaustive;
    }
  }
}
describe(parseEvent({}));
