// An Express app receiving MITPO webhooks. Run it on its own with
//   MITPO_WEBHOOK_SECRET=whsec_... npx ts-node examples/express-receiver.ts
// or see examples/demo.ts, which starts it and sends it signed deliveries.
import express from 'express';
import { MITPO_EVENT_NAMES, MitpoWebhooks, type MitpoWebhooksOptions } from 'mitpo-webhooks';

export const WEBHOOK_PATH = '/webhooks/mitpo';

/** Tells the caller which handler ran, so the demo can show it; a real app does its work here. */
export type HandlerReport = (handler: string, detail: string) => void;

export function createReceiverApp(options: MitpoWebhooksOptions, report: HandlerReport = () => {}) {
  const webhooks = new MitpoWebhooks(options);

  webhooks.on('dispatch.completed', async (event) => {
    report('on(dispatch.completed)', `dispatch ${event.data.dispatch_id} live as ${event.data.provider_resource_id ?? '?'}`);
  });
  webhooks.on(['dispatch.accepted', 'dispatch.failed'], (event) => {
    report(`on(${event.event})`, `dispatch ${event.data.dispatch_id} is ${event.data.status}`);
  });
  webhooks.on(['connection.active', 'connection.reauth_required'], (event) => {
    report(`on(${event.event})`, `connection ${String(event.data.connection_id ?? '?')}`);
  });
  webhooks.onAny((event) => {
    if (!(MITPO_EVENT_NAMES as string[]).includes(event.event)) {
      report('onAny', `an event type this version does not know: ${event.event}`);
    }
  });
  webhooks.onError((error, event) => console.error(`handler for ${event.event} failed:`, error));

  const app = express();
  // The webhook route comes before express.json(): it needs the body's raw bytes.
  app.post(WEBHOOK_PATH, webhooks.middleware());
  app.use(express.json());
  app.get('/health', (_req, res) => {
    res.json({ ok: true });
  });
  return { app, webhooks };
}

if (require.main === module) {
  const port = Number(process.env.PORT ?? 3000);
  const { app } = createReceiverApp(
    { secret: process.env.MITPO_WEBHOOK_SECRET!, logger: console },
    (handler, detail) => console.log(`${handler}: ${detail}`),
  );
  app.listen(port, '127.0.0.1', () => console.log(`Receiving MITPO webhooks on http://127.0.0.1:${port}${WEBHOOK_PATH}`));
}
