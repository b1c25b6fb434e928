// examples/cloudflare-durable-object-store.ts as the test serves it: its Worker
// and Durable Object, plus `/two/<n>`, a receiver per "isolate" n sharing the
// one REPLAY_KEYS namespace, and `/ran/<n>`, what its handlers ran (by dispatch id).
import { MitpoWebhooks } from '../../src/web';
import example, { DurableObjectReplayStore, ReplayKeyObject, type DurableObjectNamespace } from '../../examples/cloudflare-durable-object-store';

export { ReplayKeyObject };

interface Env {
  MITPO_WEBHOOK_SECRET: string;
  REPLAY_KEYS: DurableObjectNamespace;
}

const receivers = new Map<string, { webhooks: MitpoWebhooks; ran: string[] }>();

function receiver(name: string, env: Env) {
  let found = receivers.get(name);
  if (found === undefined) {
    const ran: string[] = [];
    const webhooks = new MitpoWebhooks({ secret: env.MITPO_WEBHOOK_SECRET, replay: new DurableObjectReplayStore(env.REPLAY_KEYS) });
    webhooks.on('dispatch.completed', (event) => {
      ran.push(event.data.dispatch_id);
    });
    webhooks.on('dispatch.failed', (event) => {
      ran.push(event.data.dispatch_id);
      if (event.data.dispatch_id.startsWith('dsp_fails_once') && ran.filter((id) => id === event.data.dispatch_id).length === 1) {
        throw new Error('fails the first time');
      }
    });
    receivers.set(name, (found = { webhooks, ran }));
  }
  return found;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const [, route, name] = new URL(request.url).pathname.split('/');
    if (route === 'two' && name !== undefined) return receiver(name, env).webhooks.fetchHandler()(request);
    if (route === 'ran' && name !== undefined) return Response.json(receivers.get(name)?.ran ?? []);
    return example.fetch(request, env);
  },
};
