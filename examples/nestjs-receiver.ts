// A NestJS app receiving MITPO webhooks. Run it with
//   MITPO_WEBHOOK_SECRET=whsec_... npm run example:nestjs
// PLATFORM=fastify serves it on @nestjs/platform-fastify instead of Express.
import { Body, Controller, Injectable, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import type { MitpoEventOf } from 'mitpo-webhooks';
import { MitpoWebhooksModule, OnMitpoEvent } from 'mitpo-webhooks/nestjs';

@Injectable()
export class DispatchHandlers {
  @OnMitpoEvent('dispatch.completed')
  async completed(event: MitpoEventOf<'dispatch.completed'>): Promise<void> {
    console.log(`dispatch ${event.data.dispatch_id} completed`);
  }

  @OnMitpoEvent(['dispatch.accepted', 'dispatch.failed'])
  async changed(event: MitpoEventOf<'dispatch.accepted' | 'dispatch.failed'>): Promise<void> {
    console.log(`dispatch ${event.data.dispatch_id} is ${event.data.status}`);
  }
}

/** One of the app's own routes: Nest's JSON parsing and global prefix apply to it, as usual. */
@Controller('orders')
export class OrdersController {
  @Post()
  create(@Body() order: unknown): unknown {
    return { received: order };
  }
}

@Module({
  imports: [MitpoWebhooksModule.forRoot({ secret: process.env.MITPO_WEBHOOK_SECRET!, path: '/webhooks/mitpo' })],
  providers: [DispatchHandlers],
  controllers: [OrdersController],
})
export class AppModule {}

async function main(): Promise<void> {
  const app =
    process.env.PLATFORM === 'fastify'
      ? await NestFactory.create(AppModule, new FastifyAdapter(), { logger: ['error', 'warn'] })
      : await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  app.setGlobalPrefix('api'); // applies to /api/orders, not to the webhook route
  app.enableShutdownHooks(); // on SIGTERM, in-flight deliveries finish before the server stops
  await app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1');
  const { port } = app.getHttpServer().address() as { port: number };
  console.log(`Receiving MITPO webhooks on http://127.0.0.1:${port}/webhooks/mitpo`);
}

if (require.main === module) void main();
