import http from 'node:http';
import type { AddressInfo } from 'node:net';
import connect from 'connect';
import express5 from 'express';
import express4 from 'express4';
import type { MitpoWebhooks } from '../../src';

export const WEBHOOK_PATH = '/webhooks/mitpo';

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

/** The ways an app mounts the middleware; every check must hold under each. */
export const MOUNTINGS = {
  'Express 5 route': (webhooks: MitpoWebhooks) => {
    const app = express5();
    app.all(WEBHOOK_PATH, webhooks.middleware());
    return http.createServer(app);
  },
  'Express 4 route': (webhooks: MitpoWebhooks) => {
    const app = express4();
    app.all(WEBHOOK_PATH, webhooks.middleware());
    return http.createServer(app);
  },
  'Connect app.use with { path }': (webhooks: MitpoWebhooks) => {
    const app = connect();
    app.use(webhooks.middleware({ path: WEBHOOK_PATH }));
    app.use((_req: http.IncomingMessage, res: http.ServerResponse) => {
      res.statusCode = 404;
      res.end();
    });
    return http.createServer(app);
  },
  'bare node:http': (webhooks: MitpoWebhooks) => {
    const middleware = webhooks.middleware();
    return http.createServer((req, res) =>
      middleware(req, res, (err) => {
        res.statusCode = err ? 500 : 404;
        res.end();
      }),
    );
  },
} satisfies Record<string, (webhooks: MitpoWebhooks) => http.Server>;

export type MountingName = keyof typeof MOUNTINGS;

export async function listen(server: http.Server): Promise<RunningServer> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${WEBHOOK_PATH}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

export function mount(name: MountingName, webhooks: MitpoWebhooks): Promise<RunningServer> {
  return listen(MOUNTINGS[name](webhooks));
}
