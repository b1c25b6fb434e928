import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { checkOptionKeys, routePath } from '../adapters/adapter-options';
import { nodeAnswer } from '../adapters/node-answer';
import { readNodeBody } from '../body/read-node-body';
import type { DeliveryHeaders } from '../headers/delivery-headers';
import type { MitpoWebhooks } from '../mitpo-webhooks';
import type { DeliveryPipeline } from '../pipeline/delivery-pipeline';
import { pipelineOf } from '../pipeline/pipeline-of';

/** Options of `app.register(fastifyMitpoWebhooks, options)`. */
export interface FastifyMitpoWebhooksOptions {
  /** The receiver whose checks and handlers serve the route. */
  webhooks: MitpoWebhooks;
  /** The route's URL, e.g. `/webhooks/mitpo` (under the `prefix` it is registered with, if any). */
  path: string;
}

// Fastify hands a plugin its register options too; they are Fastify's, not unknown.
const KNOWN_OPTIONS = ['webhooks', 'path', 'prefix', 'logLevel', 'logSerializers'];

async function mitpoWebhooksPlugin(fastify: FastifyInstance, options: FastifyMitpoWebhooksOptions): Promise<void> {
  const { pipeline, path } = checkOptions(options);
  // The route lives in a nested context that is not wrapped with fastify-plugin,
  // so the raw-bytes parser below is this route's alone: the rest of the app keeps
  // Fastify's JSON parsing.
  await fastify.register(async function mitpoWebhooksRoute(scope) {
    scope.removeAllContentTypeParsers();
    // Leaves the stream unread, whatever the type: the checks on the headers come
    // before the body, and the pipeline reads it from request.raw under its own limit.
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
    // Every method, so that one other than POST gets the table's 405 with `Allow: POST`.
    scope.all(path, (request, reply) => serve(pipeline, request, reply));
  });
}

async function serve(pipeline: DeliveryPipeline, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const outcome = await pipeline.process({
    method: request.raw.method,
    headers: request.raw.headers as DeliveryHeaders,
    // fastify-raw-body keeps the bytes as request.rawBody after reading the stream.
    readBody: (bodyOptions) =>
      readNodeBody(request.raw, bodyOptions, { framework: 'fastify', kept: (request as { rawBody?: unknown }).rawBody }),
  });
  const { status, headers, json } = nodeAnswer(request.raw, outcome);
  return reply.code(status).headers(headers).send(json);
}

function checkOptions(options: unknown): { pipeline: DeliveryPipeline; path: string } {
  const { webhooks, path } = checkOptionKeys(options, 'fastifyMitpoWebhooks', KNOWN_OPTIONS, ['webhooks', 'path']);
  return { pipeline: pipelineOf(webhooks, 'fastifyMitpoWebhooks'), path: routePath(path, 'fastifyMitpoWebhooks', true)! };
}

/**
 * The Fastify plugin: serves MITPO deliveries at `path` with the same checks,
 * codes, statuses and envelope as the middleware. Its raw-bytes parser applies
 * to that route only. Fastify 4 and 5.
 *
 * @throws TypeError at registration without a `MitpoWebhooks` as `webhooks`, or a `path` not starting with `/`
 * @example
 * await app.register(fastifyMitpoWebhooks, { webhooks, path: '/webhooks/mitpo' });
 */
export const fastifyMitpoWebhooks = fp(mitpoWebhooksPlugin, { fastify: '4.x || 5.x', name: 'mitpo-webhooks' });
