import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  Inject,
  Injectable,
  Module,
  Optional,
  type BeforeApplicationShutdown,
  type OnModuleDestroy,
  type DynamicModule,
  type FactoryProvider,
  type ModuleMetadata,
  type OnApplicationBootstrap,
  type OnModuleInit,
  type Provider,
  type Type,
} from '@nestjs/common';
import { DiscoveryModule, DiscoveryService, HttpAdapterHost, MetadataScanner, type AbstractHttpAdapter } from '@nestjs/core';
import { checkedPath, normalizePath } from '../adapters/adapter-options';
import { checkOptionKeys } from '../option-keys';
import { readSeconds } from '../duration-option';
import { createConnectMiddleware } from '../adapters/connect-middleware';
import { registerWebhookRoute } from '../fastify/fastify-route';
import { MitpoWebhooks } from '../mitpo-webhooks';
import { KNOWN_OPTIONS } from '../options';
import type { MitpoWebhooksOptions } from '../node-types';
import { pipelineOf } from '../pipeline/pipeline-of';
import { eventsHandledBy } from './on-mitpo-event';

/** Options of `MitpoWebhooksModule.forRoot()`: the receiver's options and where to serve it. */
export interface MitpoWebhooksModuleOptions extends MitpoWebhooksOptions {
  /** The route's URL, e.g. `/webhooks/mitpo`. Served as given: Nest's global prefix does not apply. */
  path: string;
  /** Seconds the app's close waits for running handlers before Nest closes the server (at most 3600). Default 30. */
  shutdownTimeout?: number | undefined;
}

/** A class that builds the module's options, for `forRootAsync({ useClass })` or `({ useExisting })`. */
export interface MitpoWebhooksOptionsFactory {
  createMitpoWebhooksOptions(): MitpoWebhooksModuleOptions | Promise<MitpoWebhooksModuleOptions>;
}

/**
 * Options of `MitpoWebhooksModule.forRootAsync()`: `imports`, and one of
 * `useFactory` (with `inject`), `useClass` or `useExisting`, as Nest's own modules take them.
 */
export type MitpoWebhooksModuleAsyncOptions = {
  /** Modules whose providers the options are built from (e.g. `ConfigModule`). */
  imports?: ModuleMetadata['imports'];
} & (
  | {
      /** Builds the options, e.g. from a `ConfigService`. */
      useFactory: (...args: any[]) => MitpoWebhooksModuleOptions | Promise<MitpoWebhooksModuleOptions>; // eslint-disable-line @typescript-eslint/no-explicit-any
      /** What `useFactory` is given, in order. */
      inject?: FactoryProvider['inject'];
      useClass?: undefined;
      useExisting?: undefined;
    }
  | {
      /** A class the module builds (with its own injections) and asks for the options. */
      useClass: Type<MitpoWebhooksOptionsFactory>;
      useFactory?: undefined;
      inject?: undefined;
      useExisting?: undefined;
    }
  | {
      /** A provider the app already has (exported by a module in `imports`, or global), asked for the options. */
      useExisting: Type<MitpoWebhooksOptionsFactory>;
      useFactory?: undefined;
      inject?: undefined;
      useClass?: undefined;
    }
);

/**
 * What the module's providers need of its options, read once. The options
 * themselves are not kept: they hold the secret, and Nest's container prints
 * its providers whole (a debugging dump, a devtools graph). The receiver keeps
 * its secret as a `KeyObject`, which prints no key.
 */
interface ModuleSetup {
  webhooks: MitpoWebhooks;
  path: string;
  shutdownTimeout: number;
  /** Set once the app has started (`app.init()`'s bootstrap hooks: every module initialised, the handlers registered); read by the route. */
  appStarted: boolean;
}

const MODULE_SETUP = Symbol('mitpo-webhooks module setup');
const SHUTDOWN_TIMEOUT = { name: 'MitpoWebhooksModule shutdownTimeout', fallback: 30, max: 3600 };

const servedPaths = new WeakMap<object, Set<string>>();

/**
 * Serves the route on the underlying Express or Fastify instance. It does so in
 * its constructor because Nest adds its body parsers only in `app.init()`, after
 * every provider is built: a route added here is matched first and reads the raw
 * stream itself, so it works with or without `rawBody: true`. The price, said in
 * the README: the route is outside Nest's global prefix, guards, interceptors and
 * filters.
 *
 * A testing module (`Test.createTestingModule().compile()`) builds the providers
 * before it has an HTTP adapter; the route is then added in `onModuleInit`, behind
 * Nest's parsers (on Express it needs `rawBody: true` there). An application
 * context (a worker process) never has one: no route, handlers only.
 */
@Injectable()
class MitpoWebhooksRoute implements OnModuleInit {
  private served = false;

  constructor(
    @Inject(HttpAdapterHost) private readonly adapterHost: HttpAdapterHost,
    @Inject(MODULE_SETUP) private readonly setup: ModuleSetup,
  ) {
    this.serve();
  }

  onModuleInit(): void {
    this.serve();
  }

  private serve(): void {
    const adapter = this.adapterHost.httpAdapter as AbstractHttpAdapter | undefined;
    if (this.served || adapter === undefined || adapter === null) return;
    const pipeline = pipelineOf(this.setup.webhooks, 'MitpoWebhooksModule');
    const platform = adapter.getType();
    // Express routes every case and a trailing slash to one route, so the
    // middleware matches the normalized path; Fastify routes the path as given.
    const path = platform === 'express' ? normalizePath(this.setup.path) : this.setup.path;
    // On Express a second module on the same path would never see a delivery (the
    // first answers them all, in any case of its letters, as Express routes); on
    // Fastify, which routes by case, it fails with a message that names neither.
    const served = platform === 'express' ? path.toLowerCase() : path;
    const paths = servedPaths.get(adapter) ?? new Set<string>();
    if (paths.has(served)) {
      throw new Error(`mitpo-webhooks: MitpoWebhooksModule already serves ${path} in this app; import it once per path`);
    }
    servedPaths.set(adapter, paths.add(served));
    if (platform === 'express') {
      const middleware = createConnectMiddleware(pipeline, { path }, 'nestjs');
      const { setup } = this;
      // An Express instance can already listen when Nest is given it (a health check
      // while the app starts). Until app.init() has registered the handlers and
      // initialised what they use, a delivery answered here would be a 200 that ran
      // none (and MITPO's retry a duplicate), or handlers on services not yet
      // connected: it goes on to the app instead, whose 404 MITPO retries. (Fastify
      // serves nothing before it is ready.)
      adapter.getInstance().use((req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => {
        if (setup.appStarted) middleware(req, res, next);
        else next();
      });
    } else if (platform === 'fastify') {
      void registerWebhookRoute(adapter.getInstance(), pipeline, path, 'nestjs-fastify');
    } else {
      throw new Error(`mitpo-webhooks: MitpoWebhooksModule runs on @nestjs/platform-express or @nestjs/platform-fastify, not "${platform}"`);
    }
    this.served = true;
  }
}

/** Registers every `@OnMitpoEvent` method as a handler, and closes the receiver with the app. */
@Injectable()
class MitpoWebhooksHandlers implements OnModuleInit, OnApplicationBootstrap, OnModuleDestroy, BeforeApplicationShutdown {
  private registered = false;
  private closing: Promise<void> | undefined;

  constructor(
    @Inject(DiscoveryService) private readonly discovery: DiscoveryService,
    @Inject(MetadataScanner) private readonly scanner: MetadataScanner,
    @Inject(MODULE_SETUP) private readonly setup: ModuleSetup,
  ) {}

  onModuleInit(): void {
    // Nest may call this twice on the same instances (a testing module's init(),
    // then its app's); each handler must still be added once.
    if (this.registered) return;
    this.registered = true;
    // A provider reached twice (an alias, a factory returning an existing
    // instance) must not make its handlers run twice.
    const seen = new Set<object>();
    for (const wrapper of [...this.discovery.getProviders(), ...this.discovery.getControllers()]) {
      const instance: unknown = wrapper.instance;
      if (wrapper.isAlias || typeof instance !== 'object' || instance === null || seen.has(instance)) continue;
      seen.add(instance);
      const prototype = Object.getPrototypeOf(instance) as object;
      for (const method of this.scanner.getAllMethodNames(prototype)) {
        const names = eventsHandledBy(prototype, method);
        if (names === undefined) continue;
        // Only a singleton's instance is the one Nest built with its dependencies:
        // a request-scoped or transient wrapper holds a bare prototype copy.
        if (!wrapper.isDependencyTreeStatic() || wrapper.isTransient) {
          throw new Error(
            `mitpo-webhooks: @OnMitpoEvent on ${String(wrapper.name)}.${method}: only a singleton provider can handle events, not a request-scoped or transient one`,
          );
        }
        const handler = (instance as Record<string, (...args: unknown[]) => unknown>)[method]!.bind(instance);
        this.setup.webhooks.on(names as never, handler);
      }
    }
  }

  onApplicationBootstrap(): void {
    this.setup.appStarted = true;
  }

  /**
   * Nest runs every onModuleDestroy before any beforeApplicationShutdown: closing
   * starts at the first, so new deliveries get 503 while the providers the
   * handlers use are still there, and the second waits for it.
   */
  onModuleDestroy(): void {
    this.closing ??= this.close();
    // Awaited (and its failure reported) in beforeApplicationShutdown, not here.
    this.closing.catch(() => undefined);
  }

  beforeApplicationShutdown(): Promise<void> {
    this.closing ??= this.close();
    return this.closing;
  }

  private close(): Promise<void> {
    return this.setup.webhooks.close({ timeout: this.setup.shutdownTimeout });
  }
}

const MODULE_OPTION_NAMES = [...KNOWN_OPTIONS, 'path', 'shutdownTimeout'];

/** Every option is read when the app starts, shutdownTimeout too: at shutdown a bad value would only be thrown away. */
function setUp(options: MitpoWebhooksModuleOptions): ModuleSetup {
  checkOptionKeys(options, 'MitpoWebhooksModule', MODULE_OPTION_NAMES);
  const { path, shutdownTimeout, ...receiverOptions } = options;
  const checked = checkedPath(path, 'MitpoWebhooksModule', true)!;
  const webhooks = new MitpoWebhooks(receiverOptions);
  return { webhooks, path: checked, shutdownTimeout: readSeconds(shutdownTimeout, SHUTDOWN_TIMEOUT)!, appStarted: false };
}

/**
 * Serves MITPO webhooks in a NestJS app, on `@nestjs/platform-express` or
 * `@nestjs/platform-fastify`, with or without `rawBody: true`. Methods marked
 * `@OnMitpoEvent` are its handlers; `MitpoWebhooks` can be injected anywhere
 * (for `onFailure`, `onError`, `onAny`).
 *
 * @example
 * \@Module({ imports: [MitpoWebhooksModule.forRoot({ secret: process.env.MITPO_WEBHOOK_SECRET!, path: '/webhooks/mitpo' })] })
 * export class AppModule {}
 */
@Module({})
export class MitpoWebhooksModule {
  /**
   * Imported as it is, with no forRoot() in the app, the module would serve nothing
   * and run no handler, quietly: MITPO's deliveries would meet a 404. Beside a
   * forRoot() (a feature module importing it again) the receiver is there, global.
   */
  constructor(@Optional() @Inject(MitpoWebhooks) webhooks?: MitpoWebhooks) {
    if (webhooks === undefined) {
      throw new TypeError(
        'mitpo-webhooks: MitpoWebhooksModule was imported without forRoot() or forRootAsync(), so it would serve no route; ' +
          'import MitpoWebhooksModule.forRoot({ secret, path }) once, in the root module',
      );
    }
  }

  /** @throws TypeError at start-up on a bad option, as `new MitpoWebhooks()` does, or a `path` not starting with `/` */
  static forRoot(options: MitpoWebhooksModuleOptions): DynamicModule {
    return moduleWith({ provide: MODULE_SETUP, useFactory: () => setUp(options) }, []);
  }

  /**
   * The options from other providers: a factory (e.g. one that reads a `ConfigService`),
   * or a class with `createMitpoWebhooksOptions()`, built here (`useClass`) or the app's own (`useExisting`).
   * @throws TypeError unless exactly one of `useFactory`, `useClass` and `useExisting` is given, or given `inject` without `useFactory`
   */
  static forRootAsync(options: MitpoWebhooksModuleAsyncOptions): DynamicModule {
    checkOptionKeys(options, 'MitpoWebhooksModule.forRootAsync', ['useFactory', 'useClass', 'useExisting', 'inject', 'imports']);
    const given = (['useFactory', 'useClass', 'useExisting'] as const).filter((key) => options[key] !== undefined);
    if (given.length !== 1 || typeof options[given[0]!] !== 'function') {
      throw new TypeError(
        'mitpo-webhooks: MitpoWebhooksModule.forRootAsync needs one of useFactory: (...injected) => options, ' +
          `useClass or useExisting: a class with createMitpoWebhooksOptions()${given.length > 1 ? `; it was given ${given.join(' and ')}` : ''}`,
      );
    }
    const imports = options.imports ?? [];
    if (options.useFactory !== undefined) {
      const { useFactory } = options;
      return moduleWith({ provide: MODULE_SETUP, useFactory: async (...injected: unknown[]) => setUp(await useFactory(...injected)), inject: options.inject ?? [] }, imports);
    }
    if (options.inject !== undefined) {
      throw new TypeError('mitpo-webhooks: MitpoWebhooksModule.forRootAsync takes inject only with useFactory; a useClass or useExisting class has its own injections');
    }
    const factoryClass = (options.useClass ?? options.useExisting)!;
    const setupProvider: Provider = { provide: MODULE_SETUP, useFactory: async (factory: unknown) => setUp(await optionsFrom(factory, factoryClass)), inject: [factoryClass] };
    return moduleWith(setupProvider, imports, options.useClass === undefined ? [] : [options.useClass]);
  }
}

function optionsFrom(factory: unknown, factoryClass: Type<unknown>): MitpoWebhooksModuleOptions | Promise<MitpoWebhooksModuleOptions> {
  if (typeof (factory as Partial<MitpoWebhooksOptionsFactory> | undefined)?.createMitpoWebhooksOptions !== 'function') {
    throw new TypeError(`mitpo-webhooks: MitpoWebhooksModule.forRootAsync: ${factoryClass.name || 'the class given'} has no createMitpoWebhooksOptions() method to build the options`);
  }
  return (factory as MitpoWebhooksOptionsFactory).createMitpoWebhooksOptions();
}

function moduleWith(setupProvider: Provider, imports: NonNullable<ModuleMetadata['imports']>, more: Provider[] = []): DynamicModule {
  return {
    module: MitpoWebhooksModule,
    global: true,
    imports: [DiscoveryModule, ...imports],
    providers: [
      setupProvider,
      ...more,
      { provide: MitpoWebhooks, useFactory: (setup: ModuleSetup) => setup.webhooks, inject: [MODULE_SETUP] },
      MitpoWebhooksRoute,
      MitpoWebhooksHandlers,
    ],
    exports: [MitpoWebhooks],
  };
}
