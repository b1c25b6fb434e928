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

export interface MountOptions {
  /** Puts a JSON body parser that keeps no raw bytes in front, the classic mounting mistake. */
  jsonParserFirst?: boolean;
}

type Middleware = (req: http.IncomingMessage, res: http.ServerResponse, next: (err?: unknown) => void) => void;

function chain(first: Middleware | undefined, second: Middleware): Middleware {
  if (first === undefined) return second;
  return (req, res, next) => first(req, res, (err) => (err ? next(err) : second(req, res, next)));
}

const jsonParser = (options: MountOptions) => (options.jsonParserFirst ? (express5.json() as Middleware) : undefined);

/** The ways an app mounts the middleware; every check must hold under each. */
export const MOUNTINGS = {
  'Express 5 route': (webhooks: MitpoWebhooks, options: MountOptions = {}) => {
    const app = express5();
    if (options.jsonParserFirst) app.use(express5.json());
    app.all(WEBHOOK_PATH, webhooks.middleware());
    return http.createServer(app);
  },
  'Express 4 route': (webhooks: MitpoWebhooks, options: MountOptions = {}) => {
    const app = express4();
    if (options.jsonParserFirst) app.use(express4.json());
    app.all(WEBHOOK_PATH, webhooks.middleware());
    return http.createServer(app);
  },
  'Connect app.use with { path }': (webhooks: MitpoWebhooks, options: MountOptions = {}) => {
    const app = connect();
    const parser = jsonParser(options);
    if (parser) app.use(parser);
    app.use(webhooks.middleware({ path: WEBHOOK_PATH }));
    app.use((_req: http.IncomingMessage, res: http.ServerResponse) => {
      res.statusCode = 404;
      res.end();
    });
    return http.createServer(app);
  },
  'bare node:http': (webhooks: MitpoWebhooks, options: MountOptions = {}) => {
    const middleware = chain(jsonParser(options), webhooks.middleware());
    return http.createServer((req, res) =>
      middleware(req, res, (err) => {
        res.statusCode = err ? 500 : 404;
        res.end();
      }),
    );
  },
} satisfies Record<string, (webhooks: MitpoWebhooks, options?: MountOptions) => http.Server>;

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

export function mount(name: MountingName, webhooks: MitpoWebhooks, options: MountOptions = {}): Promise<RunningServer> {
  return listen(MOUNTINGS[name](webhooks, options));
}
