// A Fastify app receiving MITPO webhooks. Run it with
//   MITPO_WEBHOOK_SECRET=whsec_... npm run example:fastify
import Fastify from 'fastify';
import { MitpoWebhooks } from 'mitpo-webhooks';
import { fastifyMitpoWebhooks } from 'mitpo-webhooks/fastify';

export const WEBHOOK_PATH = '/webhooks/mitpo';

export async function createFastifyApp(secret: string, log: (line: string) => void = console.log) {
  const webhooks = new MitpoWebhooks({ secret });
  webhooks.on('dispatch.completed', async (event) => {
    log(`dispatch ${event.data.dispatch_id} completed`);
  });
  webhooks.on('dispatch.failed', async (event) => {
    log(`dispatch ${event.data.dispatch_id} failed`);
  });

  const app = Fastify();
  // The plugin parses its own route's body as raw bytes; every other route
  // keeps Fastify's JSON parsing.
  await app.register(fastifyMitpoWebhooks, { webhooks, path: WEBHOOK_PATH });
  app.post('/orders', async (request) => ({ received: request.body }));
  // Finish in-flight deliveries before the server stops. (While it closes, Fastify
  // answers new requests 503 itself; see docs/frameworks.md, Fastify.)
  app.addHook('preClose', async () => webhooks.close());
  return app;
}

async function main(): Promise<void> {
  const app = await createFastifyApp(process.env.MITPO_WEBHOOK_SECRET!);
  const port = Number(process.env.PORT ?? 3000);
  await app.listen({ port, host: '127.0.0.1' });
  const { port: bound } = app.server.address() as { port: number };
  console.log(`Receiving MITPO webhooks on http://127.0.0.1:${bound}${WEBHOOK_PATH}`);
}

if (require.main === module) void main();
