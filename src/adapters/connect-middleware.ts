import type { IncomingMessage, ServerResponse } from 'node:http';
import { methodNotAllowed } from './method-not-allowed';
import { readNodeBody, type NodeRequest } from '../body/read-node-body';
import type { CheckedHeaders } from '../headers/check-headers';
import { isPromiseLike } from '../maybe-promise';
import { JSON_CONTENT_TYPE, type Outcome } from '../answers';
import { asVerificationError, type DeliveryPipeline } from '../receive';

/** Options of `webhooks.middleware()`. */
export interface MiddlewareOptions {
  /**
   * Only requests to this path are handled (query string and a trailing slash
   * ignored); others go to `next()`. Without it, every request the middleware is
   * given is a delivery, which is right when it is mounted on a route.
   */
  path?: string;
  /**
   * Hand every non-2xx outcome to `next(err)` as a `WebhookVerificationError`
   * instead of answering, with nothing written yet: for apps with their own error
   * handler (its `status`/`statusCode` make Express answer with the right status,
   * and its `headers` carry `Allow: POST` on a 405). Successes and duplicates are
   * still answered here. Default false.
   */
  passErrors?: boolean;
}

/** A Connect/Express middleware on plain `node:http` types. */
export type ConnectMiddleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

const KNOWN_MIDDLEWARE_OPTIONS = new Set(['path', 'passErrors']);

export function createConnectMiddleware(pipeline: DeliveryPipeline, options: MiddlewareOptions = {}): ConnectMiddleware {
  const path = middlewarePath(options);
  const passErrors = options.passErrors ?? false;
  if (typeof passErrors !== 'boolean') throw new TypeError('mitpo-webhooks: middleware passErrors must be true or false');

  return function mitpoWebhooksMiddleware(req, res, next) {
    if (path !== undefined && normalizePath(req.url) !== path) {
      next();
      return;
    }
    const answer = (outcome: Outcome) => {
      if (passErrors && outcome.error !== undefined) next(outcome.error);
      else writeOutcome(req, res, outcome);
    };
    try {
      handle(pipeline, req as NodeRequest, answer);
    } catch (error) {
      next(error);
    }
  };
}

/** Answers one delivery. Promises appear only where something downstream is asynchronous. */
function handle(pipeline: DeliveryPipeline, req: NodeRequest, answer: (outcome: Outcome) => void): void {
  const receivedAt = pipeline.receivedNow();
  const refuse = (error: unknown) => answer(pipeline.fail(asVerificationError(error), req.headers));
  if (req.method !== 'POST') {
    refuse(methodNotAllowed(req.method));
    return;
  }
  let checked: CheckedHeaders;
  try {
    checked = pipeline.checkHeaders(req.headers, true);
  } catch (error) {
    refuse(error);
    return;
  }
  readNodeBody(req, pipeline.limit, checked.contentLength, pipeline.bodyDeadlines, (error, rawBody) => {
    if (error !== undefined) {
      refuse(error);
      return;
    }
    const outcome = pipeline.handleBody(rawBody!, checked, req.headers, receivedAt);
    if (isPromiseLike(outcome)) outcome.then(answer);
    else answer(outcome);
  });
}

function writeOutcome(req: IncomingMessage, res: ServerResponse, outcome: Outcome): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  if (outcome.json !== undefined && outcome.headers !== undefined && req.readableEnded) {
    res.writeHead(outcome.status, outcome.headers);
    res.end(outcome.json);
    return;
  }
  const body = JSON.stringify(outcome.body);
  const headers: Record<string, string | number> = { 'content-type': JSON_CONTENT_TYPE, 'content-length': Buffer.byteLength(body) };
  Object.assign(headers, outcome.error?.headers);
  // A refused body that was never read would otherwise be drained by Node to keep
  // the connection alive; closing it bounds what a hostile sender can make us read.
  if (!req.readableEnded) headers.connection = 'close';
  res.writeHead(outcome.status, headers);
  res.end(body);
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
