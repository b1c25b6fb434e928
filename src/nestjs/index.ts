export {
  MitpoWebhooksModule,
  type MitpoWebhooksModuleOptions,
  type MitpoWebhooksModuleAsyncOptions,
} from './mitpo-webhooks.module';
export { OnMitpoEvent } from './on-mitpo-event';
