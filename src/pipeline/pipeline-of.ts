import type { DeliveryPipeline } from './delivery-pipeline';

/**
 * The framework entry points (`/fastify`, `/koa`, `/nestjs`) need a receiver's
 * pipeline, which is no part of its public type. They find it here, by the
 * instance, so nothing private shows in the `.d.ts` and a value that is not a
 * `MitpoWebhooks` is told apart at mount time rather than on the first delivery.
 */
const pipelines = new WeakMap<object, DeliveryPipeline>();

export function keepPipeline(webhooks: object, pipeline: DeliveryPipeline): void {
  pipelines.set(webhooks, pipeline);
}

/** @throws TypeError naming `where` when `webhooks` is not a `MitpoWebhooks` */
export function pipelineOf(webhooks: unknown, where: string): DeliveryPipeline {
  const pipeline = typeof webhooks === 'object' && webhooks !== null ? pipelines.get(webhooks) : undefined;
  if (pipeline === undefined) {
    throw new TypeError(`mitpo-webhooks: ${where} needs webhooks: a MitpoWebhooks instance (new MitpoWebhooks({ secret }))`);
  }
  return pipeline;
}
