// Type-level tests of the framework entry points: checked by `npm run typecheck`
// (tsc), never run. Each expect-error directive fails the typecheck if its line
// stops being an error.
import { Injectable, Module } from '@nestjs/common';
import Fastify from 'fastify';
import Koa from 'koa';
import { MitpoWebhooks, type DeliveryContext, type MitpoEvent, type MitpoEventOf } from 'mitpo-webhooks';
import fastifyDefault, { fastifyMitpoWebhooks } from 'mitpo-webhooks/fastify';
import { koaMitpoWebhooks } from 'mitpo-webhooks/koa';
import { MitpoWebhooksModule, OnMitpoEvent, type MitpoWebhooksOptionsFactory } from 'mitpo-webhooks/nestjs';

const webhooks = new MitpoWebhooks({ secret: 'whsec_x' });

// Fastify takes the plugin, its options checked. (The .d.ts names the app's own
// 'fastify' types, so under Fastify 4 it is checked against Fastify 4's: the
// package smoke test compiles that; here 'fastify' is 5.)
void Fastify().register(fastifyMitpoWebhooks, { webhooks, path: '/webhooks/mitpo' });
void Fastify().register(fastifyDefault, { webhooks, path: '/webhooks/mitpo' });
// @ts-expect-error: path is required
void Fastify().register(fastifyMitpoWebhooks, { webhooks });
// @ts-expect-error: webhooks is a MitpoWebhooks
void Fastify().register(fastifyMitpoWebhooks, { webhooks: { secret: 'whsec_x' }, path: '/webhooks/mitpo' });

// Koa takes the middleware as it is, with @types/koa.
new Koa().use(koaMitpoWebhooks(webhooks));
new Koa().use(koaMitpoWebhooks(webhooks, { path: '/webhooks/mitpo' }));
// @ts-expect-error: not an option
koaMitpoWebhooks(webhooks, { route: '/webhooks/mitpo' });

// @OnMitpoEvent is typed like on(): the method's event is checked against the names.
@Injectable()
export class Handlers {
  @OnMitpoEvent('dispatch.completed')
  completed(event: MitpoEventOf<'dispatch.completed'>, ctx: DeliveryContext): string {
    return `${event.data.dispatch_id} ${ctx.deliveryKey}`;
  }

  @OnMitpoEvent(['dispatch.accepted', 'dispatch.failed'])
  async changed(event: MitpoEventOf<'dispatch.accepted' | 'dispatch.failed'>): Promise<void> {
    void event.data.status;
  }

  @OnMitpoEvent(['connection.active', 'connection.reauth_required'])
  anyOf(event: MitpoEvent): void {
    void event;
  }

  // @ts-expect-error: a dispatch event handled as a connection event
  @OnMitpoEvent('dispatch.completed')
  wrong(event: MitpoEventOf<'connection.active'>): void {
    void event;
  }

  // @ts-expect-error: one of the names is not narrowed to by the parameter
  @OnMitpoEvent(['dispatch.failed', 'connection.active'])
  tooNarrow(event: MitpoEventOf<'dispatch.failed'>): void {
    void event;
  }

  // @ts-expect-error: not an event MITPO sends
  @OnMitpoEvent('dispatch.complete')
  misspelt(): void {}
}

@Module({ imports: [MitpoWebhooksModule.forRoot({ secret: 'whsec_x', path: '/webhooks/mitpo', maxEventAge: 600 })] })
export class AppModule {}

class Config {
  get(key: string): string {
    return key;
  }
}
MitpoWebhooksModule.forRootAsync({
  useFactory: (config: Config) => ({ secret: config.get('MITPO_WEBHOOK_SECRET'), path: '/webhooks/mitpo' }),
  inject: [Config],
});
class OptionsFromConfig implements MitpoWebhooksOptionsFactory {
  createMitpoWebhooksOptions() {
    return { secret: 'whsec_x', path: '/webhooks/mitpo' };
  }
}
MitpoWebhooksModule.forRootAsync({ useClass: OptionsFromConfig });
MitpoWebhooksModule.forRootAsync({ imports: [], useExisting: OptionsFromConfig });
// @ts-expect-error: one way to build the options, not two
MitpoWebhooksModule.forRootAsync({ useFactory: () => ({ secret: 'whsec_x', path: '/webhooks/mitpo' }), useClass: OptionsFromConfig });
// @ts-expect-error: inject is useFactory's; a class has its own injections
MitpoWebhooksModule.forRootAsync({ useClass: OptionsFromConfig, inject: [Config] });
// @ts-expect-error: a class that cannot build the options
MitpoWebhooksModule.forRootAsync({ useClass: Config });
// @ts-expect-error: path is required
MitpoWebhooksModule.forRoot({ secret: 'whsec_x' });
// @ts-expect-error: an option the receiver does not have
MitpoWebhooksModule.forRoot({ secret: 'whsec_x', path: '/webhooks/mitpo', maxAge: 300 });
