import { fastifyMitpoWebhooks } from './fastify-mitpo-webhooks';

export { fastifyMitpoWebhooks, type FastifyMitpoWebhooksOptions } from './fastify-mitpo-webhooks';
export default fastifyMitpoWebhooks;
