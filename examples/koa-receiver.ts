// A Koa app receiving MITPO webhooks. Run it with
//   MITPO_WEBHOOK_SECRET=whsec_... npm run example:koa
import http from 'node:http';
import { bodyParser } from '@koa/bodyparser';
import Koa from 'koa';
import { MitpoWebhooks } from 'mitpo-webhooks';
import { koaMitpoWebhooks } from 'mitpo-webhooks/koa';

export const WEBHOOK_PATH = '/webhooks/mitpo';

export function createKoaApp(secret: string, log: (line: string) => void = console.log) {
  const webhooks = new MitpoWebhooks({ secret });
  webhooks.on(['connection.active', 'connection.reauth_required'], async (event) => {
    log(`connection ${String(event.data.connection_id ?? '?')}: ${event.event}`);
  });
  webhooks.on('dispatch.completed', async (event) => {
    log(`dispatch ${event.data.dispatch_id} completed`);
  });

  const app = new Koa();
  // First, so it reads the raw body itself. (Behind @koa/bodyparser it would
  // verify the bytes that parser keeps as ctx.request.rawBody.)
  app.use(koaMitpoWebhooks(webhooks, { path: WEBHOOK_PATH }));
  app.use(bodyParser());
  app.use((ctx) => {
    ctx.body = { received: ctx.request.body ?? null };
  });
  return { app, webhooks };
}

function main(): void {
  const { app, webhooks } = createKoaApp(process.env.MITPO_WEBHOOK_SECRET!);
  const server = http.createServer(app.callback());
  server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as { port: number };
    console.log(`Receiving MITPO webhooks on http://127.0.0.1:${port}${WEBHOOK_PATH}`);
  });
  process.once('SIGTERM', () => {
    // In-flight deliveries finish (new ones get 503) before the server stops.
    void webhooks.close().then(() => server.close());
  });
}

if (require.main === module) main();
