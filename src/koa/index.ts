export {
  koaMitpoWebhooks,
  type KoaMitpoWebhooksOptions,
  type KoaMitpoWebhooksMiddleware,
  type KoaContextLike,
} from './koa-mitpo-webhooks';
