import type { FastifyInstance, FastifyReply, FastifyRequest, RegisterOptions } from 'fastify';
import { nodeAnswer } from '../adapters/node-answer';
import type { BodySource } from '../body/body-errors';
import { readNodeBody } from '../body/read-node-body';
import { acceptsContentType } from '../headers/content-type';
import type { DeliveryHeaders } from '../headers/delivery-headers';
import type { DeliveryPipeline } from '../pipeline/delivery-pipeline';

/** Fastify's own register options, which apply to the route. */
export type RouteRegisterOptions = Pick<RegisterOptions, 'prefix' | 'logLevel' | 'logSerializers'>;

/**
 * Registers the webhook route on `fastify` in a nested context of its own. That
 * context is not wrapped with fastify-plugin, so the raw-bytes parser below is
 * this route's alone: the rest of the app keeps Fastify's JSON parsing. Kept
 * apart from the plugin so that NestJS on Fastify serves its route through it
 * without loading fastify-plugin. `framework` is whose fix a consumed body's
 * message names. `registerOptions` are those the plugin was registered with:
 * Fastify does not apply them to a plugin wrapped with fastify-plugin, so they
 * are passed on to the route's own context.
 */
export function registerWebhookRoute(
  fastify: FastifyInstance,
  pipeline: DeliveryPipeline,
  path: string,
  framework: BodySource,
  registerOptions: RouteRegisterOptions = {},
): PromiseLike<unknown> {
  return fastify.register(
    async function mitpoWebhooksRoute(scope) {
      scope.removeAllContentTypeParsers();
      // Leaves the stream unread, whatever the type: the checks on the headers come
      // before the body, and the pipeline reads it from request.raw under its own limit.
      scope.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
      // Fastify refuses some requests before any parser runs (Fastify 5: a Content-Type
      // that is not a media type; a QUERY without one). The pipeline answers those
      // itself, so they get the table's order (503, 405 first) and envelope, and
      // onFailure hears of them; but only when it will refuse them too, so an error
      // with that code from one of the app's own hooks can never let a handler run.
      scope.setErrorHandler((error, request, reply) => {
        const code = (error as { code?: unknown }).code;
        if (REFUSED_BY_FASTIFY_FIRST.has(code) && refusedOnItsHeaders(request)) return serve(pipeline, framework, request, reply);
        throw error;
      });
      // The HTTP methods Fastify routes, so that one other than POST gets the table's 405 with `Allow: POST`.
      scope.all(path, (request, reply) => serve(pipeline, framework, request, reply));
    },
    registerOptions,
  );
}

const REFUSED_BY_FASTIFY_FIRST = new Set<unknown>(['FST_ERR_CTP_INVALID_MEDIA_TYPE', 'FST_ERR_ROUTE_MISSING_CONTENT_TYPE']);

/** Whether the pipeline refuses this request on its method or Content-Type alone. */
function refusedOnItsHeaders(request: FastifyRequest): boolean {
  return request.raw.method !== 'POST' || !acceptsContentType(request.raw.headers as DeliveryHeaders);
}

async function serve(
  pipeline: DeliveryPipeline,
  framework: BodySource,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const outcome = await pipeline.process({
    method: request.raw.method,
    headers: request.raw.headers as DeliveryHeaders,
    // fastify-raw-body keeps the bytes as request.rawBody after reading the stream.
    readBody: (bodyOptions) => readNodeBody(request.raw, bodyOptions, { framework, kept: (request as { rawBody?: unknown }).rawBody }),
  });
  const { status, headers, json } = nodeAnswer(request.raw, outcome, pipeline.shutdown.closing);
  return reply.code(status).headers(headers).send(json);
}
