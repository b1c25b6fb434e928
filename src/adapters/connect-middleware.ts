import type { IncomingMessage, ServerResponse } from 'node:http';
import { WebhookVerificationError } from '../errors';
import { readNodeBody, type NodeRequest } from '../body/read-node-body';
import { asVerificationError, type DeliveryPipeline, type Outcome } from '../receive';

/** Options of `webhooks.middleware()`. */
export interface MiddlewareOptions {
  /**
   * Only requests to this path are handled (query string and a trailing slash
   * ignored); others go to `next()`. Without it, every request the middleware is
   * given is a delivery, which is right when it is mounted on a route.
   */
  path?: string;
}

/** A Connect/Express middleware on plain `node:http` types. */
export type ConnectMiddleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8' };
const KNOWN_MIDDLEWARE_OPTIONS = new Set(['path']);

export function createConnectMiddleware(pipeline: DeliveryPipeline, options: MiddlewareOptions = {}): ConnectMiddleware {
  const path = middlewarePath(options);

  return function mitpoWebhooksMiddleware(req, res, next) {
    if (path !== undefined && normalizePath(req.url) !== path) {
      next();
      return;
    }
    handle(pipeline, req as NodeRequest).then(
      (outcome) => writeOutcome(req, res, outcome),
      (error: unknown) => next(error),
    );
  };
}

async function handle(pipeline: DeliveryPipeline, req: NodeRequest): Promise<Outcome> {
  const receivedAt = pipeline.receivedNow();
  if (req.method !== 'POST') {
    return pipeline.fail(
      new WebhookVerificationError(
        'method_not_allowed',
        `MITPO delivers webhooks with POST; ${String(req.method).slice(0, 16)} is not allowed here`,
      ),
      req.headers,
    );
  }
  try {
    const checked = pipeline.checkHeaders(req.headers);
    const rawBody = await readNodeBody(req, pipeline.limit, checked.contentLength, pipeline.bodyTimeoutMs);
    const event = await pipeline.checkBody(rawBody, checked);
    return await pipeline.deliver(event, rawBody, req.headers, receivedAt);
  } catch (error) {
    return pipeline.fail(asVerificationError(error), req.headers);
  }
}

function writeOutcome(req: IncomingMessage, res: ServerResponse, outcome: Outcome): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  const body = JSON.stringify(outcome.body);
  const headers: Record<string, string | number> = { ...JSON_HEADERS, 'content-length': Buffer.byteLength(body) };
  if (outcome.status === 405) headers.allow = 'POST';
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
