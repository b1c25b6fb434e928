import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { checkedPath } from '../adapters/adapter-options';
import { checkOptionKeys } from '../option-keys';
import type { MitpoWebhooks } from '../mitpo-webhooks';
import type { DeliveryPipeline } from '../pipeline/delivery-pipeline';
import { pipelineOf } from '../pipeline/pipeline-of';
import { registerWebhookRoute, type RouteRegisterOptions } from './fastify-route';

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
  const { prefix, logLevel, logSerializers } = options as FastifyMitpoWebhooksOptions & RouteRegisterOptions;
  const registerOptions = Object.fromEntries(
    Object.entries({ prefix, logLevel, logSerializers }).filter(([, value]) => value !== undefined),
  ) as RouteRegisterOptions;
  await registerWebhookRoute(fastify, pipeline, path, 'fastify', registerOptions);
}

function checkOptions(options: unknown): { pipeline: DeliveryPipeline; path: string } {
  const { webhooks, path } = checkOptionKeys(options, 'fastifyMitpoWebhooks', KNOWN_OPTIONS, ['webhooks', 'path']);
  return { pipeline: pipelineOf(webhooks, 'fastifyMitpoWebhooks'), path: checkedPath(path, 'fastifyMitpoWebhooks', true)! };
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
