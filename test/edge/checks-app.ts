// The app every Web runtime serves in test/edge/runtimes.test.ts: receivers from
// mitpo-webhooks/web, one per test (by id in the path), each configured as a row
// of the checks table needs, recording its handler runs. Platform-neutral: it is
// bundled for workerd, Deno and Bun as it is.
import { MitpoWebhooks, sign, verifySignature, type ReplayStore, type WebMitpoWebhooksOptions } from '../../src/web';

/** test/helpers/recorder.ts's secret: the requests come from the same table. */
export const SECRET = 'whsec_test_a1b2c3d4e5f6';

const unreachableStore: ReplayStore = {
  claim: () => Promise.reject(new Error('ECONNREFUSED 127.0.0.1:6379')),
  complete: () => Promise.resolve(),
  release: () => Promise.resolve(),
};

/** How a row of the table configures its receiver, by name (the rows' own options hold Node's types). */
export const PROFILES = {
  plain: {},
  // The same limit as the table's 1024 bytes, written as a size: '1kb' must mean 1024 here as on Node.
  'limit-1kb': { limit: '1kb' },
  'unreachable-replay': { replay: unreachableStore },
  'throwing-handler': {},
} satisfies Record<string, Partial<WebMitpoWebhooksOptions>>;

export type Profile = keyof typeof PROFILES;

interface Recorded {
  webhooks: MitpoWebhooks;
  runs: Array<{ handler: string; rawBody: string }>;
}

function recordingReceiver(profile: Profile): Recorded {
  const runs: Recorded['runs'] = [];
  const webhooks = new MitpoWebhooks({ secret: SECRET, ...PROFILES[profile] });
  // What ctx.rawBody is, as its class's name: a handler here must get a Uint8Array, never a Buffer.
  const kind = (bytes: Uint8Array) => `${Object.getPrototypeOf(bytes)?.constructor?.name}/${bytes.byteLength}`;
  webhooks.on(['dispatch.accepted', 'dispatch.completed', 'dispatch.failed', 'connection.active', 'connection.reauth_required'], (event, ctx) => {
    runs.push({ handler: `on(${event.event})`, rawBody: kind(ctx.rawBody) });
  });
  webhooks.onAny((_event, ctx) => {
    runs.push({ handler: 'onAny', rawBody: kind(ctx.rawBody) });
  });
  if (profile === 'throwing-handler') {
    webhooks.on('dispatch.completed', () => {
      throw new Error('database is down');
    });
  }
  return { webhooks, runs };
}

/** Made when the module loads, as a Worker usually makes its receiver: that must work in every runtime's global scope. */
const atLoad = new MitpoWebhooks({ secret: SECRET });

/**
 * `POST /deliver/<profile>/<id>`: the receiver `<id>` (made on first use) answers.
 * `GET /runs/<id>`: what its handlers recorded, as JSON.
 * `POST /at-load`: the receiver made when the module loaded answers.
 * `POST /sign`: `sign()` of the body. `POST /verify-signature`: `verifySignature()` of the body and its header.
 */
export function createChecksApp(): { fetch(request: Request): Promise<Response> } {
  const receivers = new Map<string, Recorded>();
  return {
    async fetch(request) {
      const [, route, a, b] = new URL(request.url).pathname.split('/');
      if (route === 'deliver' && a !== undefined && b !== undefined && a in PROFILES) {
        let receiver = receivers.get(b);
        if (receiver === undefined) receivers.set(b, (receiver = recordingReceiver(a as Profile)));
        return receiver.webhooks.fetchHandler()(request);
      }
      if (route === 'runs' && a !== undefined) return Response.json(receivers.get(a)?.runs ?? null);
      if (route === 'at-load') return atLoad.fetchHandler()(request);
      if (route === 'sign') return new Response(await sign(new Uint8Array(await request.arrayBuffer()), SECRET));
      if (route === 'verify-signature') {
        const valid = await verifySignature(new Uint8Array(await request.arrayBuffer()), request.headers.get('x-mitpo-signature'), [SECRET]);
        return Response.json({ valid });
      }
      return new Response('not found', { status: 404 });
    },
  };
}
