// A Connect app receiving MITPO webhooks, the middleware filtering by path itself.
//   MITPO_WEBHOOK_SECRET=whsec_... npm run example:connect
import http from 'node:http';
import connect from 'connect';
import { MitpoWebhooks, type WebhookLogger } from 'mitpo-webhooks';

export function createConnectApp(
  secret: string,
  onEvent: (line: string) => void = console.log,
  logger: WebhookLogger = console,
) {
  const webhooks = new MitpoWebhooks({ secret, logger });
  webhooks.on('dispatch.completed', (event) => onEvent(`dispatch ${event.data.dispatch_id} completed`));
  webhooks.on('connection.reauth_required', (event) => onEvent(`connection ${String(event.data.connection_id)} needs re-authentication`));

  const app = connect();
  app.use(webhooks.middleware({ path: '/webhooks/mitpo' }));
  app.use((_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.statusCode = 404;
    res.end('Not found\n');
  });
  return app;
}

if (require.main === module) {
  const port = Number(process.env.PORT ?? 3000);
  http
    .createServer(createConnectApp(process.env.MITPO_WEBHOOK_SECRET!))
    .listen(port, '127.0.0.1', () => console.log(`Connect receiver on http://127.0.0.1:${port}/webhooks/mitpo`));
}
