import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import connect from 'connect';
import express5 from 'express';
import express4 from 'express4';
import fastify5 from 'fastify';
import fastify4 from 'fastify4';
import Koa3 from 'koa';
import Koa2 from 'koa2';
import type { MitpoWebhooks } from '../../src';
import { fastifyMitpoWebhooks } from '../../src/fastify';
import { koaMitpoWebhooks } from '../../src/koa';

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

/** A Fastify preParsing hook that reads the whole body and keeps none of it. */
export async function consumeBodyKeepingNoBytes(_request: unknown, _reply: unknown, payload: NodeJS.ReadableStream) {
  for await (const _chunk of payload) {
    // read and dropped
  }
  return Readable.from([]);
}

/**
 * A Fastify app serving the plugin, as a plain Node server: the request handler
 * Fastify would listen with, so suites can wrap it like any other mounting's.
 * "A JSON parser first" is a preParsing hook that reads the stream and keeps no
 * bytes, the way a body is consumed ahead of a Fastify route.
 */
async function fastifyServer(create: typeof fastify5 | typeof fastify4, webhooks: MitpoWebhooks, options: MountOptions) {
  let server: http.Server | undefined;
  const app = (create as typeof fastify5)({
    serverFactory: (handler) => (server = http.createServer(handler)),
  });
  if (options.jsonParserFirst) app.addHook('preParsing', consumeBodyKeepingNoBytes);
  await app.register(fastifyMitpoWebhooks, { webhooks, path: WEBHOOK_PATH });
  await app.ready();
  return server!;
}

/** A Koa body parser that reads the stream and keeps no bytes (koa-body's default). */
async function koaParserKeepingNoBytes(ctx: Koa3.Context, next: Koa3.Next): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of ctx.req) chunks.push(chunk as Buffer);
  (ctx.request as { body?: unknown }).body = Buffer.concat(chunks).toString('utf8');
  await next();
}

function koaServer(KoaApp: typeof Koa3, webhooks: MitpoWebhooks, options: MountOptions): http.Server {
  const app = new KoaApp();
  if (options.jsonParserFirst) app.use(koaParserKeepingNoBytes);
  app.use(koaMitpoWebhooks(webhooks, { path: WEBHOOK_PATH }));
  return http.createServer(app.callback());
}

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
  'Fastify 5 plugin': (webhooks: MitpoWebhooks, options: MountOptions = {}) => fastifyServer(fastify5, webhooks, options),
  'Fastify 4 plugin': (webhooks: MitpoWebhooks, options: MountOptions = {}) => fastifyServer(fastify4, webhooks, options),
  'Koa 3 middleware': (webhooks: MitpoWebhooks, options: MountOptions = {}) => koaServer(Koa3, webhooks, options),
  'Koa 2 middleware': (webhooks: MitpoWebhooks, options: MountOptions = {}) =>
    koaServer(Koa2, webhooks, options),
} satisfies Record<string, (webhooks: MitpoWebhooks, options?: MountOptions) => http.Server | Promise<http.Server>>;

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

export async function mount(name: MountingName, webhooks: MitpoWebhooks, options: MountOptions = {}): Promise<RunningServer> {
  return listen(await MOUNTINGS[name](webhooks, options));
}

/** A mounting's app as a request listener, for suites that wrap it (in an async context, in a span). */
export async function requestListenerOf(name: MountingName, webhooks: MitpoWebhooks): Promise<http.RequestListener> {
  return (await MOUNTINGS[name](webhooks)).listeners('request')[0] as http.RequestListener;
}
