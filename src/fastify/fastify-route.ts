import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { nodeAnswer } from '../adapters/node-answer';
import type { BodySource } from '../body/body-errors';
import { readNodeBody } from '../body/read-node-body';
import type { DeliveryHeaders } from '../headers/delivery-headers';
import type { DeliveryPipeline } from '../pipeline/delivery-pipeline';

/**
 * Registers the webhook route on `fastify` in a nested context of its own. That
 * context is not wrapped with fastify-plugin, so the raw-bytes parser below is
 * this route's alone: the rest of the app keeps Fastify's JSON parsing. Kept
 * apart from the plugin so that NestJS on Fastify serves its route through it
 * without loading fastify-plugin. `framework` is whose fix a consumed body's
 * message names. `prefix` is the one the plugin was registered with: Fastify
 * does not apply it to a plugin wrapped with fastify-plugin, so it is passed on.
 */
export function registerWebhookRoute(
  fastify: FastifyInstance,
  pipeline: DeliveryPipeline,
  path: string,
  framework: BodySource,
  prefix?: string,
): PromiseLike<unknown> {
  return fastify.register(
    async function mitpoWebhooksRoute(scope) {
      scope.removeAllContentTypeParsers();
      // Leaves the stream unread, whatever the type: the checks on the headers come
      // before the body, and the pipeline reads it from request.raw under its own limit.
      scope.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
      // Fastify 5 refuses a Content-Type that is not a media type before any parser
      // runs. The pipeline still answers it, so it gets the table's order (405, 503
      // first) and envelope, and onFailure hears of it; any other error is the app's.
      scope.setErrorHandler((error, request, reply) => {
        if ((error as { code?: unknown }).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return serve(pipeline, framework, request, reply);
        throw error;
      });
      // The HTTP methods Fastify routes, so that one other than POST gets the table's 405 with `Allow: POST`.
      scope.all(path, (request, reply) => serve(pipeline, framework, request, reply));
    },
    prefix === undefined ? {} : { prefix },
  );
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
  const { status, headers, json } = nodeAnswer(request.raw, outcome);
  return reply.code(status).headers(headers).send(json);
}
