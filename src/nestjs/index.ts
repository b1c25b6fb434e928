/// <reference types="node" preserve="true" />
// Its types use Node's: see src/index.ts.
export {
  MitpoWebhooksModule,
  type MitpoWebhooksModuleOptions,
  type MitpoWebhooksModuleAsyncOptions,
  type MitpoWebhooksOptionsFactory,
} from './mitpo-webhooks.module';
export { OnMitpoEvent } from './on-mitpo-event';
