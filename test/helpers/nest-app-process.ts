// A NestJS app in a process of its own, driven over IPC by test/helpers/nest-apps.ts.
// Nest 12 ships only ESM, which Jest's module registry cannot load on Node 20;
// a plain Node process loads it with require(esm). One app at a time: each
// 'start' builds a fresh app for one row of the checks table.
import { AsyncLocalStorage } from 'node:async_hooks';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { inspect } from 'node:util';
import {
  Body,
  Controller,
  Inject,
  Injectable,
  Module,
  Post,
  Req,
  Scope,
  type INestApplication,
  type INestApplicationContext,
  type Provider,
} from '@nestjs/common';
import { ModulesContainer, NestFactory } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import express from 'express';
import { MitpoWebhooks, type MitpoEvent, type MitpoWebhooksOptions } from '../../src';
import { MitpoWebhooksModule, OnMitpoEvent, type MitpoWebhooksModuleAsyncOptions, type MitpoWebhooksModuleOptions, type MitpoWebhooksOptionsFactory } from '../../src/nestjs';
import { CHECK_CASES } from './check-cases';
import { SECRET } from './recorder';
import { consumeBodyKeepingNoBytes, WEBHOOK_PATH } from './servers';

export interface StartNestApp {
  type: 'start';
  platform: 'express' | 'fastify';
  rawBody: boolean;
  /** A row of CHECK_CASES whose options and setup the receiver gets. */
  caseIndex?: number;
  /** Something ahead of Nest reads the body and keeps no bytes. */
  consumeFirst?: boolean;
  /**
   * Options given through forRootAsync instead of forRoot: `true` or `useFactory`, a factory;
   * `useClass`, a class the module builds, injected from an imported module; `useExisting`, that
   * module's own instance of it; `useClass-without-method`, a class that cannot build them.
   */
  async?: boolean | 'useFactory' | 'useClass' | 'useExisting' | 'useClass-without-method';
  /** A provider besides RecordingHandlers: one start-up must refuse, or RecordingHandlers reached twice. */
  extra?: 'request-scoped' | 'transient' | 'alias' | 'factory-alias';
  /**
   * How the app is built: NestFactory.create (the default), a testing module (with
   * `testing-init`, whose moduleRef.init() runs the init hooks a first time), or an
   * application context without HTTP; or (`listening-first`, Express only) on an Express
   * instance already listening, left uninitialised until an 'init' message.
   */
  bootstrap?: 'factory' | 'testing' | 'testing-init' | 'context' | 'listening-first';
  /**
   * MitpoWebhooksModule imported as it is, without forRoot(): `alone`, in place of forRoot();
   * `beside`, in a feature module of an app that also imports forRoot().
   */
  bareModule?: 'alone' | 'beside';
  /** A second MitpoWebhooksModule.forRoot, serving this path. */
  secondModulePath?: string;
  /** More keys for forRootAsync's own options (JSON only), which it must refuse. */
  asyncExtra?: Record<string, unknown>;
  /** More options for forRoot (JSON only). */
  moduleOptions?: Record<string, unknown>;
  /** dispatch.accepted handlers wait for a 'release' message, after telling 'entered'. */
  gated?: boolean;
  /** A provider of the app whose onModuleInit tells 'entered', then waits for a 'release' message (a service connecting). */
  slowInit?: boolean;
}

type Run = { handler: string; requestId: string | undefined };
const runs: Run[] = [];
const requestContext = new AsyncLocalStorage<{ requestId: string }>();
let requests = 0;

@Injectable()
class RecordingHandlers {
  @OnMitpoEvent(['dispatch.accepted', 'dispatch.completed', 'dispatch.failed', 'connection.active', 'connection.reauth_required'])
  record(event: MitpoEvent): void {
    runs.push({ handler: `on(${event.event})`, requestId: requestContext.getStore()?.requestId });
  }
}

@Injectable({ scope: Scope.REQUEST })
class RequestScopedHandlers {
  @OnMitpoEvent('dispatch.completed')
  record(): void {}
}

@Injectable({ scope: Scope.TRANSIENT })
class TransientHandlers {
  constructor(@Inject(RecordingHandlers) private readonly recorder: RecordingHandlers) {}

  @OnMitpoEvent('dispatch.completed')
  record(event: MitpoEvent): void {
    this.recorder.record(event);
  }
}

const EXTRA_PROVIDERS: Record<NonNullable<StartNestApp['extra']>, Provider> = {
  'request-scoped': RequestScopedHandlers,
  transient: TransientHandlers,
  alias: { provide: 'RECORDER_ALIAS', useExisting: RecordingHandlers },
  'factory-alias': { provide: 'RECORDER_FACTORY', useFactory: (recorder: RecordingHandlers) => recorder, inject: [RecordingHandlers] },
};

let release: () => void = () => undefined;

/** A service that connects to something in its onModuleInit, as a database client does. */
@Injectable()
class SlowInit {
  async onModuleInit(): Promise<void> {
    const released = new Promise<void>((resolve) => (release = resolve));
    process.send!({ type: 'entered' });
    await released;
  }
}

/** An ordinary JSON route of the app, under Nest's global prefix, to show its parsing is Nest's. */
@Controller('echo')
class EchoController {
  @Post()
  echo(@Body() body: unknown, @Req() req: { rawBody?: Buffer }): unknown {
    return { body, rawBody: req.rawBody?.toString('utf8') ?? null };
  }
}

/** Where an app keeps its settings: what a class given to forRootAsync is injected with. */
@Injectable()
class Settings {
  options: MitpoWebhooksModuleOptions = { secret: '', path: '' };
}

@Injectable()
class OptionsFromSettings implements MitpoWebhooksOptionsFactory {
  constructor(@Inject(Settings) private readonly settings: Settings) {}

  async createMitpoWebhooksOptions(): Promise<MitpoWebhooksModuleOptions> {
    return this.settings.options;
  }
}

@Injectable()
class NotAnOptionsFactory {}

/** forRootAsync's options, as the message asks, with `options` reached through the app's providers. */
function asyncOptions(options: MitpoWebhooksModuleOptions, message: StartNestApp): MitpoWebhooksModuleAsyncOptions {
  @Module({ providers: [{ provide: Settings, useFactory: () => Object.assign(new Settings(), { options }) }, OptionsFromSettings], exports: [Settings, OptionsFromSettings] })
  class SettingsModule {}
  const extra = message.asyncExtra as object;
  switch (message.async) {
    case 'useClass':
      return { imports: [SettingsModule], useClass: OptionsFromSettings, ...extra };
    case 'useExisting':
      return { imports: [SettingsModule], useExisting: OptionsFromSettings, ...extra };
    case 'useClass-without-method':
      return { useClass: NotAnOptionsFactory as never, ...extra };
    default:
      return { useFactory: async () => options, ...extra };
  }
}

function appModule(receiverOptions: Partial<MitpoWebhooksOptions>, message: StartNestApp) {
  const options = { secret: SECRET, path: WEBHOOK_PATH, ...receiverOptions, ...message.moduleOptions };
  @Module({ imports: [MitpoWebhooksModule] })
  class FeatureModule {}
  @Module({
    imports: message.bareModule === 'alone' ? [MitpoWebhooksModule] : [
      ...(message.bareModule === 'beside' ? [FeatureModule] : []),
      message.async
        ? MitpoWebhooksModule.forRootAsync(asyncOptions(options, message))
        : MitpoWebhooksModule.forRoot(options),
      ...(message.secondModulePath === undefined
        ? []
        : [MitpoWebhooksModule.forRoot({ secret: 'whsec_second_receiver', path: message.secondModulePath })]),
    ],
    providers: [RecordingHandlers, ...(message.extra ? [EXTRA_PROVIDERS[message.extra]] : []), ...(message.slowInit ? [SlowInit] : [])],
    controllers: [EchoController],
  })
  class AppModule {}
  return AppModule;
}

/** A worker process's Nest: no HTTP, but the handlers must still be registered. */
async function startContext(message: StartNestApp): Promise<INestApplicationContext> {
  const context = await NestFactory.createApplicationContext(appModule({}, message), { logger: false });
  await context.init();
  return context;
}

async function start(message: StartNestApp): Promise<INestApplication> {
  const check = message.caseIndex === undefined ? undefined : CHECK_CASES[message.caseIndex]!;
  const module = appModule(check?.options ?? {}, message);
  const inContext = (next: () => void) => requestContext.run({ requestId: `req-${++requests}` }, next);
  const create = async (adapter: ExpressAdapter | FastifyAdapter): Promise<INestApplication> => {
    // abortOnError off: a start-up error is the test's to see, not a process.abort().
    const options = { rawBody: message.rawBody, logger: false as const, abortOnError: false };
    if (message.bootstrap !== 'testing' && message.bootstrap !== 'testing-init') return NestFactory.create(module, adapter, options);
    // The e2e setup Nest documents: providers are built before there is an HTTP adapter.
    const moduleRef = await Test.createTestingModule({ imports: [module] }).compile();
    if (message.bootstrap === 'testing-init') await moduleRef.init();
    return moduleRef.createNestApplication(adapter, options);
  };
  let app: INestApplication;
  if (message.platform === 'express') {
    // What an app puts on the Express instance ahead of Nest: a request id, and in
    // the consumed-body case a JSON parser.
    const server = express();
    server.use((_req, _res, next) => inContext(next));
    if (message.consumeFirst || check?.jsonParserFirst) server.use(express.json());
    app = await create(new ExpressAdapter(server));
  } else {
    const adapter = new FastifyAdapter();
    adapter.getInstance().addHook('onRequest', (_request, _reply, done) => inContext(done));
    if (message.consumeFirst || check?.jsonParserFirst) adapter.getInstance().addHook('preParsing', consumeBodyKeepingNoBytes);
    app = await create(adapter);
  }
  app.setGlobalPrefix('api');
  const webhooks = app.get(MitpoWebhooks);
  webhooks.onAny(() => {
    runs.push({ handler: 'onAny', requestId: requestContext.getStore()?.requestId });
  });
  check?.setup?.(webhooks);
  if (message.gated) {
    webhooks.on('dispatch.accepted', async () => {
      const released = new Promise<void>((resolve) => (release = resolve));
      process.send!({ type: 'entered' });
      await released;
    });
  }
  await app.listen(0, '127.0.0.1');
  return app;
}

/**
 * An app whose Express instance already listens (for a health check while Nest
 * starts): NestFactory.create() builds the providers, and the route with them, but
 * the app is not initialised until an 'init' message.
 */
async function startListeningFirst(message: StartNestApp): Promise<{ app: INestApplication; port: number }> {
  const server = express();
  const listening = server.listen(0, '127.0.0.1');
  await new Promise((resolve) => listening.once('listening', resolve));
  const app = await NestFactory.create(appModule({}, message), new ExpressAdapter(server), { logger: false, abortOnError: false });
  app.get(MitpoWebhooks).onAny(() => {
    runs.push({ handler: 'onAny', requestId: undefined });
  });
  const close = app.close.bind(app);
  app.close = async () => {
    await close();
    await new Promise((resolve) => listening.close(resolve));
  };
  return { app, port: (listening.address() as AddressInfo).port };
}

type Message =
  | StartNestApp
  | { type: 'runs' | 'close' | 'release' | 'exit' | 'container' | 'init' }
  | { type: 'receive'; body: string; headers: Record<string, string> };

let current: INestApplicationContext | undefined;
process.on('message', (message: Message) => {
  void (async () => {
    try {
      if (message.type === 'start' && message.bootstrap === 'listening-first') {
        runs.length = 0;
        const { app, port } = await startListeningFirst(message);
        current = app;
        process.send!({ type: 'started', port });
      } else if (message.type === 'init') {
        await (current as INestApplication).init();
        process.send!({ type: 'initialised' });
      } else if (message.type === 'start' && message.bootstrap === 'context') {
        runs.length = 0;
        current = await startContext(message);
        process.send!({ type: 'started', port: 0 });
      } else if (message.type === 'start') {
        runs.length = 0;
        const app = await start(message);
        current = app;
        const { port } = (app.getHttpServer() as http.Server).address() as AddressInfo;
        process.send!({ type: 'started', port });
      } else if (message.type === 'receive') {
        const answer = await current!.get(MitpoWebhooks).receive({ rawBody: message.body, headers: message.headers });
        process.send!({ type: 'received', answer });
      } else if (message.type === 'container') {
        // What a look into Nest's container prints: every module's providers, their instances included.
        const modules = [...current!.get(ModulesContainer).values()];
        const text = modules.flatMap((module) => [...module.providers.values()].map((wrapper) => inspect(wrapper, { depth: 10 }))).join('\n');
        process.send!({ type: 'container', text });
      } else if (message.type === 'runs') {
        process.send!({ type: 'runs', runs });
      } else if (message.type === 'release') {
        release();
      } else if (message.type === 'close') {
        await current?.close();
        current = undefined;
        process.send!({ type: 'closed' });
      } else {
        process.exit(0);
      }
    } catch (error) {
      process.send!({ type: 'failed', message: error instanceof Error ? `${error.message}\n${error.stack}` : String(error) });
    }
  })();
});
// Read through the same resolution the app's imports get (nest-modules-override.ts may redirect it).
const nestVersion = (JSON.parse(readFileSync(path.join(path.dirname(require.resolve('@nestjs/core')), 'package.json'), 'utf8')) as { version: string }).version;
process.send!({ type: 'ready', nestVersion });
