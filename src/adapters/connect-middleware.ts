import type { IncomingMessage, ServerResponse } from 'node:http';
import { answerHeaders, type Outcome } from '../answers';
import { readNodeBody, type NodeRequest } from '../body/read-node-body';
import type { DeliveryHeaders } from '../headers/delivery-headers';
import type { DeliveryPipeline } from '../pipeline/delivery-pipeline';

/** Options of `webhooks.middleware()`. */
export interface MiddlewareOptions {
  /**
   * Only requests to this path are handled (query string and a trailing slash
   * ignored); others go to `next()`. Matched against the URL as the app received
   * it (Express's `req.originalUrl`) and the mount-relative one, so
   * `app.use('/webhooks', webhooks.middleware({ path: '/webhooks/mitpo' }))`
   * owns `/webhooks/mitpo`. Without it, every request the middleware is given is
   * a delivery, which is right when it is mounted on a route.
   */
  path?: string;
  /**
   * Hand every non-2xx outcome to `next(err)` as a `WebhookVerificationError`
   * instead of answering, with nothing written yet: for apps with their own error
   * handler. Successes and duplicates are still answered here. Default false.
   */
  passErrors?: boolean;
}

/** A Connect/Express middleware on plain `node:http` types. */
export type ConnectMiddleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

const KNOWN_MIDDLEWARE_OPTIONS = new Set(['path', 'passErrors']);

/** The Connect adapter: how to read a Node request, and how to answer on its response. */
export function createConnectMiddleware(pipeline: DeliveryPipeline, options: MiddlewareOptions = {}): ConnectMiddleware {
  const path = middlewarePath(options);
  const passErrors = options.passErrors ?? false;
  if (typeof passErrors !== 'boolean') throw new TypeError('mitpo-webhooks: middleware passErrors must be true or false');

  return function mitpoWebhooksMiddleware(req, res, next) {
    if (path !== undefined && !ownsPath(req, path)) {
      next();
      return;
    }
    pipeline
      .process({
        method: req.method,
        // Node's own headers already are a plain object with lower-case names.
        headers: req.headers as DeliveryHeaders,
        readBody: (bodyOptions) => readNodeBody(req as NodeRequest, bodyOptions),
      })
      .then((outcome) => {
        if (passErrors && outcome.error !== undefined) next(outcome.error);
        else writeOutcome(req, res, outcome);
      })
      .catch(next);
  };
}

function writeOutcome(req: IncomingMessage, res: ServerResponse, outcome: Outcome): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  const json = JSON.stringify(outcome.body);
  const headers = answerHeaders(outcome, json);
  // A refused body that was never read would otherwise be drained by Node to keep
  // the connection alive; closing it bounds what a hostile sender can make us read.
  if (!req.readableEnded) headers.connection = 'close';
  res.writeHead(outcome.status, headers);
  res.end(json);
}

function ownsPath(req: IncomingMessage, path: string): boolean {
  const { originalUrl } = req as IncomingMessage & { originalUrl?: unknown };
  return normalizePath(req.url) === path || (typeof originalUrl === 'string' && normalizePath(originalUrl) === path);
}

function middlewarePath(options: unknown): string | undefined {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('mitpo-webhooks: middleware(options) takes an object, e.g. { path: "/webhooks/mitpo" }');
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN_MIDDLEWARE_OPTIONS.has(key)) {
      throw new TypeError(`mitpo-webhooks: unknown middleware option "${key}"; known options are ${[...KNOWN_MIDDLEWARE_OPTIONS].join(', ')}`);
    }
  }
  const { path } = options as MiddlewareOptions;
  if (path === undefined) return undefined;
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new TypeError(`mitpo-webhooks: middleware path must be a string starting with "/" (got ${JSON.stringify(path)})`);
  }
  return normalizePath(path);
}

function normalizePath(url: string | undefined): string {
  const pathname = (url ?? '/').split('?', 1)[0]!;
  return pathname.length > 1 && pathname.endsWith('/') ? pathname.slice(0, -1) : pathname;
}
