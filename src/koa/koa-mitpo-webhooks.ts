import type { IncomingMessage } from 'node:http';
import { isServedPath, routePath } from '../adapters/adapter-options';
import { checkOptionKeys } from '../option-keys';
import { nodeAnswer } from '../adapters/node-answer';
import { readNodeBody } from '../body/read-node-body';
import type { DeliveryHeaders } from '../headers/delivery-headers';
import type { MitpoWebhooks } from '../mitpo-webhooks';
import { pipelineOf } from '../pipeline/pipeline-of';

/** Options of `koaMitpoWebhooks()`. */
export interface KoaMitpoWebhooksOptions {
  /**
   * Only requests to this path are handled (query string, case and one trailing
   * slash ignored); others go to `next()`. Without it, every request the middleware
   * is given is a delivery, which is right when a router mounts it on a route.
   */
  path?: string | undefined;
}

/**
 * The part of a Koa context the middleware uses, written out so that its types
 * need neither `koa` nor `@types/koa`; a Koa 2 or 3 context is one.
 */
export interface KoaContextLike {
  req: IncomingMessage;
  path: string;
  /** `@koa/bodyparser` (and parsers like it) keep the bytes they read as `rawBody`. */
  request: { rawBody?: unknown };
  status: number;
  body: unknown;
  set(field: Record<string, string>): void;
}

/** A Koa middleware. */
export type KoaMitpoWebhooksMiddleware = (ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<void>;

/**
 * Koa middleware serving MITPO deliveries with the same checks, codes, statuses
 * and envelope as the Express middleware. Mount it before any body parser and it
 * reads the body itself; behind `@koa/bodyparser` it verifies the bytes that
 * parser kept (`ctx.request.rawBody`). Koa 2 and 3.
 *
 * @throws TypeError without a `MitpoWebhooks`, on an unknown option or a path not starting with `/`
 * @example
 * app.use(koaMitpoWebhooks(webhooks, { path: '/webhooks/mitpo' }));
 */
export function koaMitpoWebhooks(webhooks: MitpoWebhooks, options: KoaMitpoWebhooksOptions = {}): KoaMitpoWebhooksMiddleware {
  const pipeline = pipelineOf(webhooks, 'koaMitpoWebhooks');
  const { path: given } = checkOptionKeys(options, 'koaMitpoWebhooks', ['path']);
  const path = routePath(given, 'koaMitpoWebhooks', false);

  async function serve(ctx: KoaContextLike, next: () => Promise<unknown>): Promise<void> {
    if (path !== undefined && !isServedPath(ctx.path, path)) {
      await next();
      return;
    }
    const outcome = await pipeline.process({
      method: ctx.req.method,
      headers: ctx.req.headers as DeliveryHeaders,
      readBody: (bodyOptions) => readNodeBody(ctx.req, bodyOptions, { framework: 'koa', kept: ctx.request.rawBody }),
    });
    const { status, headers, json } = nodeAnswer(ctx.req, outcome, pipeline.shutdown.closing);
    ctx.status = status;
    // The type first: Koa would call a string body text/plain if none were set.
    ctx.set(headers);
    ctx.body = json;
  }

  return function mitpoWebhooksKoaMiddleware(ctx, next) {
    // Express and Connect call their middleware with (req, res, next): said at once, and
    // thrown, not rejected, since Express 4 leaves a rejected promise unhandled.
    if (typeof next !== 'function') {
      throw new TypeError('mitpo-webhooks: koaMitpoWebhooks() is Koa middleware, called with (ctx, next): on Express, Connect or node:http, mount webhooks.middleware()');
    }
    return serve(ctx, next);
  };
}
