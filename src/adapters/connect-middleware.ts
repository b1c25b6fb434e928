import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Outcome } from '../answers';
import type { BodySource } from '../body/body-errors';
import { keptOnNodeRequest, readNodeBody, type NodeRequest } from '../body/read-node-body';
import type { DeliveryHeaders } from '../headers/delivery-headers';
import type { DeliveryPipeline } from '../pipeline/delivery-pipeline';
import { checkOptionKeys } from '../option-keys';
import { isServedPath, routePath } from './adapter-options';
import { closesConnection, nodeAnswer } from './node-answer';

/** Options of `webhooks.middleware()`. */
export interface MiddlewareOptions {
  /**
   * Only requests to this path are handled (matched without regard to case, with
   * or without one trailing slash, query string ignored, as Express routes);
   * others go to `next()`. Matched against the URL as the app received
   * it (Express's `req.originalUrl`) and the mount-relative one, so
   * `app.use('/webhooks', webhooks.middleware({ path: '/webhooks/mitpo' }))`
   * owns `/webhooks/mitpo`. Without it, every request the middleware is given is
   * a delivery, which is right when it is mounted on a route.
   */
  path?: string | undefined;
  /**
   * Hand every non-2xx outcome to `next(err)` as a `WebhookVerificationError`
   * instead of answering, with nothing written yet (a refusal made before the
   * body was read to its end has `Connection: close` set): for apps with their
   * own error handler. Every 2xx (success, duplicate, queued, stale) is still answered here. Default false.
   */
  passErrors?: boolean | undefined;
}

/** A Connect/Express middleware on plain `node:http` types. */
export type ConnectMiddleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

const KNOWN_MIDDLEWARE_OPTIONS = ['path', 'passErrors'];

function notConnect(): TypeError {
  return new TypeError(
    "mitpo-webhooks: webhooks.middleware() is Connect/Express middleware, called with (req, res, next): on Koa, mount koaMitpoWebhooks(webhooks) from 'mitpo-webhooks/koa'; " +
      "on Fastify, register fastifyMitpoWebhooks from 'mitpo-webhooks/fastify'",
  );
}

/**
 * The Connect adapter: how to read a Node request, and how to answer on its
 * response. `framework` is whose fix a consumed body's message names: NestJS
 * serves its route through this middleware on Express.
 */
export function createConnectMiddleware(
  pipeline: DeliveryPipeline,
  options: MiddlewareOptions = {},
  framework: BodySource = 'node',
): ConnectMiddleware {
  const path = middlewarePath(options);
  const passErrors = options.passErrors ?? false;
  if (typeof passErrors !== 'boolean') throw new TypeError('mitpo-webhooks: middleware passErrors must be true or false');

  return function mitpoWebhooksMiddleware(req, res, next) {
    // Koa calls its middleware with (ctx, next), Fastify a plugin with (instance, options, done):
    // said at once, rather than a 404 and an unhandled rejection, or a timer's TypeError. Fastify
    // hears it through done(), as its ready() then fails; a throw there would be uncaught.
    if (typeof (res as Partial<ServerResponse> | undefined)?.writeHead !== 'function') {
      if (typeof next !== 'function') throw notConnect();
      next(notConnect());
      return;
    }
    if (path !== undefined && !ownsPath(req, path)) {
      next();
      return;
    }
    pipeline
      .process({
        method: req.method,
        // Node's own headers already are a plain object with lower-case names.
        headers: req.headers as DeliveryHeaders,
        readBody: (bodyOptions) => readNodeBody(req as NodeRequest, bodyOptions, keptOnNodeRequest(req as NodeRequest, framework)),
      })
      // Only a failure of ours goes to next: a throw from the app's own next (passOn) is
      // the app's, and surfaces as it is rather than as a second call of next.
      .then((outcome) => {
        if (passErrors && outcome.error !== undefined) passOn(req, res, outcome.error, next, pipeline);
        else writeOutcome(req, res, outcome, pipeline.shutdown.closing);
      }, next);
  };
}

function writeOutcome(req: IncomingMessage, res: ServerResponse, outcome: Outcome, closing: boolean): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  const { status, headers, json } = nodeAnswer(req, outcome, closing);
  res.writeHead(status, headers);
  res.end(json);
}

/**
 * Hands a refusal to the app's error handler with nothing written. A body left
 * unread would be read to its end by Node to keep the connection alive, however
 * long the sender makes it, and a connection kept while the receiver shuts down
 * would be reset under the client's next request: the answer closes the
 * connection in both cases, as ours does.
 */
function passOn(req: IncomingMessage, res: ServerResponse, error: Error, next: (err?: unknown) => void, pipeline: DeliveryPipeline): void {
  const closing = pipeline.shutdown.closing;
  if (closesConnection(req, closing) && !res.headersSent) {
    res.setHeader('connection', 'close');
    if (!(req.complete || req.readableEnded)) boundUnreadBody(req, res, pipeline.bodyBounds);
  }
  next(error);
}

/**
 * An error handler that reads the rest of the request before it answers (Express's
 * default one does) would read a refused body for as long, and as far, as its
 * sender likes. From when someone starts reading it until it ends or the answer
 * is sent, the body stays under the receiver's own bounds: past `bodyTimeout`, or
 * past `limit` bytes, the connection is dropped. Nothing is read here: a handler
 * that answers without reading, however slowly, is left alone.
 */
function boundUnreadBody(req: IncomingMessage, res: ServerResponse, { limit, timeoutMs }: { limit: number; timeoutMs: number }): void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let received = 0;
  const drop = () => {
    done();
    req.socket.destroy();
  };
  const counted = (chunk: Buffer | string) => {
    received += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
    if (received > limit) drop();
  };
  const reading = () => {
    if (timer !== undefined) return;
    timer = setTimeout(drop, timeoutMs);
    // Flowing, or read() by a 'readable' listener already there: either way a 'data'
    // listener sees each chunk as it is read, and changes nothing in how it is read.
    req.on('data', counted);
  };
  // A read begins one of three ways: the request flows already (a middleware before us
  // listens to 'data'); it is resumed ('resume' comes before the first chunk flows: pipe,
  // resume(), on('data')); or a 'readable' listener read()s it (async iteration). That
  // listener is not added yet when told of: counting starts once it is.
  const readableAdded = (event: string | symbol) => {
    if (event === 'readable') queueMicrotask(reading);
  };
  const done = () => {
    clearTimeout(timer);
    req.off('resume', reading).off('newListener', readableAdded).off('data', counted).off('end', done);
    res.off('finish', done).off('close', done);
  };
  req.on('resume', reading).on('newListener', readableAdded).once('end', done);
  res.once('finish', done).once('close', done);
  if (req.readableFlowing === true || req.listenerCount('readable') > 0) reading();
}

function ownsPath(req: IncomingMessage, path: string): boolean {
  const { originalUrl } = req as IncomingMessage & { originalUrl?: unknown };
  return isServedPath(req.url, path) || (typeof originalUrl === 'string' && isServedPath(originalUrl, path));
}

function middlewarePath(options: unknown): string | undefined {
  const { path } = checkOptionKeys(options, 'middleware', KNOWN_MIDDLEWARE_OPTIONS);
  return routePath(path, 'middleware', false);
}
