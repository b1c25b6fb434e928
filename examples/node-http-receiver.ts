// MITPO webhooks on bare node:http, no framework.
//   MITPO_WEBHOOK_SECRET=whsec_... npm run example:node-http
import http from 'node:http';
import { MitpoWebhooks, type WebhookLogger } from 'mitpo-webhooks';

export function createNodeHttpServer(
  secret: string,
  onEvent: (line: string) => void = console.log,
  logger: WebhookLogger = console,
) {
  const webhooks = new MitpoWebhooks({ secret, logger });
  webhooks.onAny((event, ctx) => onEvent(`${event.event} (delivery ${ctx.deliveryKey.slice(0, 12)}…)`));

  const middleware = webhooks.middleware({ path: '/webhooks/mitpo' });
  return http.createServer((req, res) =>
    middleware(req, res, (err) => {
      res.writeHead(err ? 500 : 404).end();
    }),
  );
}

if (require.main === module) {
  const port = Number(process.env.PORT ?? 3000);
  createNodeHttpServer(process.env.MITPO_WEBHOOK_SECRET!).listen(port, '127.0.0.1', () =>
    console.log(`node:http receiver on http://127.0.0.1:${port}/webhooks/mitpo`),
  );
}
