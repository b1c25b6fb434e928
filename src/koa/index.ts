/// <reference types="node" preserve="true" />
// Its types use Node's: see src/index.ts.
export {
  koaMitpoWebhooks,
  type KoaMitpoWebhooksOptions,
  type KoaMitpoWebhooksMiddleware,
  type KoaContextLike,
} from './koa-mitpo-webhooks';
