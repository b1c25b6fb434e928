import { CHECK_CASES, expectAnswer } from '../helpers/check-cases';
import { send } from '../helpers/http-client';
import { NestApps } from '../helpers/nest-apps';
import { SECRET } from '../helpers/recorder';
import { signedDelivery } from '../../src/testing';

// NestJS on both platforms, with and without rawBody: true, each app in a process
// of its own (see nest-app-process.ts for why, and for the app). NestJS 12, the
// one installed here; .ci/run runs the suite again on NestJS 11, with NEST_MODULES
// naming an install of it and NEST_MAJOR=11.
const CONFIGS = [
  { platform: 'express', rawBody: false },
  { platform: 'express', rawBody: true },
  { platform: 'fastify', rawBody: false },
  { platform: 'fastify', rawBody: true },
] as const;

let apps: NestApps;
beforeAll(async () => {
  apps = await NestApps.spawn();
});
afterAll(async () => {
  await apps.exit();
});

it(`runs on NestJS ${process.env.NEST_MAJOR ?? '12'}`, () => {
  expect(apps.nestVersion.split('.')[0]).toBe(process.env.NEST_MAJOR ?? '12');
});

describe.each(CONFIGS)('MitpoWebhooksModule on platform-$platform, rawBody: $rawBody', ({ platform, rawBody }) => {
  it.each(CHECK_CASES.map((check, caseIndex) => ({ ...check, caseIndex })))(
    'the checks table: $name → $status $outcome',
    async (check) => {
      const { url } = await apps.start({ platform, rawBody, caseIndex: check.caseIndex });
      try {
        const spec = check.request();
        const request = { method: spec.method ?? 'POST', headers: spec.headers, body: spec.body };
        if (check.sendTwice) expect((await send(url, request)).status).toBe(200);
        expectAnswer(check, await send(url, request));
        expect(await apps.runs()).toHaveLength(check.runs);
      } finally {
        await apps.close();
      }
    },
  );

  it('runs @OnMitpoEvent methods in the async context of the request', async () => {
    const { url } = await apps.start({ platform, rawBody });
    try {
      expect((await send(url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }))).status).toBe(200);
      const runs = await apps.runs();
      expect(runs.map((run) => run.handler)).toEqual(['on(dispatch.completed)', 'onAny']);
      // Set by middleware ahead of Nest on the underlying instance, for this request.
      expect(runs[0]!.requestId).toMatch(/^req-\d+$/);
      expect(runs[1]!.requestId).toBe(runs[0]!.requestId);
    } finally {
      await apps.close();
    }
  });

  it(`verifies every spelling of its path${platform === 'fastify' ? " Fastify's router takes to it (it routes case-sensitively)" : ' (case, one trailing slash), as Nest on Express routes'}`, async () => {
    const { url } = await apps.start({ platform, rawBody });
    try {
      const forged = signedDelivery({ event: 'dispatch.completed', secret: 'whsec_someone_else' });
      for (const spelling of ['/Webhooks/MITPO', '/webhooks/mitpo/']) {
        const reply = await send(url.replace('/webhooks/mitpo', spelling), forged);
        // Express routes every spelling to the middleware, which refuses the forgery;
        // Fastify's router gives other spellings no route at all, ours or the app's.
        expect(reply.status).toBe(platform === 'express' ? 401 : 404);
      }
      expect(await apps.runs()).toHaveLength(0);
    } finally {
      await apps.close();
    }
  });

  it("leaves the app's own routes to Nest: JSON parsed, the raw body kept only with rawBody: true, under the global prefix", async () => {
    const { base, url } = await apps.start({ platform, rawBody });
    try {
      const echo = await send(`${base}/api/echo`, { headers: { 'content-type': 'application/json' }, body: '{"order":42}' });
      expect(echo.status).toBe(201);
      expect(echo.json).toEqual({ body: { order: 42 }, rawBody: rawBody ? '{"order":42}' : null });
      // The webhook route is served as given, outside the global prefix.
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect((await send(url.replace('/webhooks/', '/api/webhooks/'), delivery)).status).toBe(404);
      expect((await send(url, delivery)).status).toBe(200);
    } finally {
      await apps.close();
    }
  });

  it('names the NestJS fix when something ahead of Nest consumed the body', async () => {
    const { url } = await apps.start({ platform, rawBody, consumeFirst: true });
    try {
      const reply = await send(url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }));
      expect(reply.status).toBe(500);
      expect(reply.json.error?.code).toBe('body_already_parsed');
      expect(reply.json.error?.message).toContain('MitpoWebhooksModule');
      expect(reply.json.error?.message).toContain(platform === 'express' ? 'NestFactory.create()' : 'hook on the Fastify instance');
      expect(await apps.runs()).toHaveLength(0);
    } finally {
      await apps.close();
    }
  });

  it.each([
    ['request-scoped', 'RequestScopedHandlers'],
    ['transient', 'TransientHandlers'],
  ] as const)('refuses at start-up an @OnMitpoEvent method on a %s provider', async (extra, name) => {
    await expect(apps.start({ platform, rawBody, extra })).rejects.toThrow(
      new RegExp(`@OnMitpoEvent on ${name}\\.record: only a singleton provider can handle events`),
    );
  });

  it.each(['alias', 'factory-alias'] as const)('runs a handler once when its provider is also reached through an %s', async (extra) => {
    const { url } = await apps.start({ platform, rawBody, extra });
    try {
      expect((await send(url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }))).status).toBe(200);
      expect((await apps.runs()).map((run) => run.handler)).toEqual(['on(dispatch.completed)', 'onAny']);
    } finally {
      await apps.close();
    }
  });

  it(`serves the route from a testing module (Test.createTestingModule)${platform === 'express' && !rawBody ? ', naming rawBody: true as the fix on Express' : ''}`, async () => {
    const { url } = await apps.start({ platform, rawBody, bootstrap: 'testing' });
    try {
      const reply = await send(url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }));
      if (platform === 'express' && !rawBody) {
        // Built before there is an HTTP adapter, the route comes behind Nest's JSON parser.
        expect(reply.status).toBe(500);
        expect(reply.json.error?.code).toBe('body_already_parsed');
        expect(reply.json.error?.message).toContain('createNestApplication({ rawBody: true })');
        expect(await apps.runs()).toHaveLength(0);
      } else {
        expect(reply.json).toEqual({ success: true });
        expect((await apps.runs()).map((run) => run.handler)).toEqual(['on(dispatch.completed)', 'onAny']);
      }
    } finally {
      await apps.close();
    }
  });

  it('on app.close(), lets a running delivery finish and answers new ones 503 before the server stops', async () => {
    const { url } = await apps.start({ platform, rawBody, gated: true });
    const entered = apps.entered();
    const running = send(url, signedDelivery({ event: 'dispatch.accepted', secret: SECRET }));
    await entered;
    const closed = apps.close();
    // The receiver closes in beforeApplicationShutdown, while Nest still serves.
    let late = await send(url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }));
    while (late.status === 200) late = await send(url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }));
    expect(late.status).toBe(503);
    expect(late.json.error?.code).toBe('shutting_down');
    apps.release();
    expect((await running).status).toBe(200);
    await closed;
  });

  it('stops waiting for a handler after shutdownTimeout: the delivery is released and answered 503', async () => {
    const { url } = await apps.start({ platform, rawBody, gated: true, moduleOptions: { shutdownTimeout: 0.2 } });
    const entered = apps.entered();
    const running = send(url, signedDelivery({ event: 'dispatch.accepted', secret: SECRET }));
    await entered;
    await apps.close();
    const reply = await running;
    expect(reply.status).toBe(503);
    expect(reply.json.error?.code).toBe('shutting_down');
    apps.release();
  });

  it('refuses a shutdownTimeout that is not seconds at start-up', async () => {
    await expect(apps.start({ platform, rawBody, moduleOptions: { shutdownTimeout: 30_000 } })).rejects.toThrow(
      /MitpoWebhooksModule shutdownTimeout is 30000 seconds/,
    );
  });

  it('adds each handler once when Nest runs the init hooks twice (a testing module, then its app)', async () => {
    const { url } = await apps.start({ platform, rawBody: true, bootstrap: 'testing-init' });
    try {
      expect((await send(url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }))).status).toBe(200);
      expect((await apps.runs()).map((run) => run.handler)).toEqual(['on(dispatch.completed)', 'onAny']);
    } finally {
      await apps.close();
    }
  });

  it('serves a path given with a trailing slash at that path', async () => {
    const { base } = await apps.start({ platform, rawBody, moduleOptions: { path: '/webhooks/mitpo/' } });
    try {
      expect((await send(`${base}/webhooks/mitpo/`, signedDelivery({ event: 'dispatch.completed', secret: SECRET }))).status).toBe(200);
      expect(await apps.runs()).toHaveLength(2);
    } finally {
      await apps.close();
    }
  });

  it('refuses at start-up a second module on a path already served', async () => {
    await expect(apps.start({ platform, rawBody, secondModulePath: '/webhooks/mitpo' })).rejects.toThrow(
      /MitpoWebhooksModule already serves \/webhooks\/mitpo in this app; import it once per path/,
    );
  });

  it(`${platform === 'express' ? 'refuses' : 'serves'} a second module on the path with a trailing slash${platform === 'express' ? ', which the first would answer (Express ignores it)' : ' (Fastify routes it apart)'}`, async () => {
    const started = apps.start({ platform, rawBody, secondModulePath: '/webhooks/mitpo/' });
    if (platform === 'express') {
      await expect(started).rejects.toThrow(/MitpoWebhooksModule already serves \/webhooks\/mitpo in this app; import it once per path/);
    } else {
      await started;
      await apps.close();
    }
  });

  it(`${platform === 'express' ? 'refuses' : 'serves'} a second module on the path in another case${platform === 'express' ? ', which the first would answer (Express ignores case)' : ' (Fastify routes by case)'}`, async () => {
    const started = apps.start({ platform, rawBody, secondModulePath: '/Webhooks/MITPO' });
    if (platform === 'express') {
      await expect(started).rejects.toThrow(/MitpoWebhooksModule already serves \/Webhooks\/MITPO in this app; import it once per path/);
    } else {
      await started;
      await apps.close();
    }
  });

  it('refuses at start-up a MitpoWebhooksModule imported without forRoot(), which would serve nothing', async () => {
    await expect(apps.start({ platform, rawBody, bareModule: 'alone' })).rejects.toThrow(
      /MitpoWebhooksModule was imported without forRoot\(\) or forRootAsync\(\)/,
    );
  });

  it('starts with MitpoWebhooksModule imported as it is in a feature module, beside forRoot() in the app', async () => {
    const { url } = await apps.start({ platform, rawBody: true, bareModule: 'beside' });
    try {
      expect((await send(url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }))).status).toBe(200);
      expect((await apps.runs()).map((run) => run.handler)).toEqual(['on(dispatch.completed)', 'onAny']);
    } finally {
      await apps.close();
    }
  });

  it('refuses at start-up an option it does not know, naming the module', async () => {
    await expect(apps.start({ platform, rawBody, moduleOptions: { shutdowntimeout: 5 } })).rejects.toThrow(
      /unknown MitpoWebhooksModule option "shutdowntimeout"; known options are .*path, shutdownTimeout/,
    );
    await expect(apps.start({ platform, rawBody, async: true, asyncExtra: { injects: [] } })).rejects.toThrow(
      /unknown MitpoWebhooksModule.forRootAsync option "injects"; known options are useFactory, useClass, useExisting, inject, imports/,
    );
  });

  // Found in review: the module's options were a provider of their own, kept whole, so
  // inspecting Nest's container (a debugging dump, a devtools graph) printed the secret.
  it("keeps no copy of the secret in Nest's container, from forRoot or forRootAsync", async () => {
    for (const async of [false, true]) {
      await apps.start({ platform, rawBody, async, moduleOptions: { secret: 'whsec_LEAKCANARY_in_the_container' } });
      try {
        const text = await apps.containerText();
        expect(text).toContain('MitpoWebhooks');
        expect(text).not.toContain('LEAKCANARY');
      } finally {
        await apps.close();
      }
    }
  });

  it.each(['useFactory', 'useClass', 'useExisting'] as const)('takes its options from forRootAsync({ %s })', async (async) => {
    const { url } = await apps.start({ platform, rawBody, async });
    try {
      expect((await send(url, signedDelivery({ event: 'dispatch.failed', secret: SECRET }))).status).toBe(200);
      expect((await apps.runs()).map((run) => run.handler)).toEqual(['on(dispatch.failed)', 'onAny']);
      const forged = signedDelivery({ event: 'dispatch.failed', secret: 'whsec_someone_else_entirely' });
      expect((await send(url, forged)).json.error?.code).toBe('invalid_signature');
    } finally {
      await apps.close();
    }
  });
});

describe('MitpoWebhooksModule.forRootAsync refuses at start-up', () => {
  it('more than one way to build the options', async () => {
    await expect(apps.start({ platform: 'express', rawBody: false, async: 'useFactory', asyncExtra: { useClass: 'OptionsFromSettings' } })).rejects.toThrow(
      /forRootAsync needs one of useFactory: \(\.\.\.injected\) => options, useClass or useExisting: a class with createMitpoWebhooksOptions\(\); it was given useFactory and useClass/,
    );
  });

  it('inject beside useClass, which has injections of its own', async () => {
    await expect(apps.start({ platform: 'express', rawBody: false, async: 'useClass', asyncExtra: { inject: ['Settings'] } })).rejects.toThrow(
      /forRootAsync takes inject only with useFactory/,
    );
  });

  it('a useClass that has no createMitpoWebhooksOptions(), naming it', async () => {
    await expect(apps.start({ platform: 'express', rawBody: false, async: 'useClass-without-method' })).rejects.toThrow(
      /forRootAsync: NotAnOptionsFactory has no createMitpoWebhooksOptions\(\) method/,
    );
  });
});

// Found by a hunt: on an Express instance already listening when Nest was given it, the
// route answered deliveries before app.init() found the @OnMitpoEvent handlers: 200 with
// no handler run, and MITPO's retry was then a duplicate. The event was lost.
describe('MitpoWebhooksModule on an Express instance already listening', () => {
  it('leaves deliveries to the app until it is initialised, then handles them', async () => {
    const { url } = await apps.start({ platform: 'express', rawBody: false, bootstrap: 'listening-first' });
    try {
      const delivery = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
      expect((await send(url, delivery)).status).toBe(404);
      expect(await apps.runs()).toEqual([]);
      await apps.init();
      expect((await send(url, delivery)).json).toEqual({ success: true });
      expect((await apps.runs()).map((run) => run.handler)).toEqual(['on(dispatch.failed)', 'onAny']);
    } finally {
      await apps.close();
    }
  });

  // Found in review: the route opened once the module's handlers were registered, before the
  // app's own modules had initialised, so a handler could run on a service still connecting.
  it("leaves deliveries to the app while the app's own modules are still initialising", async () => {
    const { url } = await apps.start({ platform: 'express', rawBody: false, bootstrap: 'listening-first', slowInit: true });
    try {
      const entered = apps.entered();
      const initialised = apps.init();
      const delivery = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
      try {
        await entered;
        expect((await send(url, delivery)).status).toBe(404);
        expect(await apps.runs()).toEqual([]);
      } finally {
        apps.release();
        await initialised;
      }
      expect((await send(url, delivery)).json).toEqual({ success: true });
    } finally {
      await apps.close();
    }
  });
});

describe('MitpoWebhooksModule in an application context (a worker process: no HTTP)', () => {
  it('serves no route but registers the @OnMitpoEvent handlers', async () => {
    await apps.start({ platform: 'express', rawBody: false, bootstrap: 'context' });
    try {
      const answer = await apps.receive(signedDelivery({ event: 'dispatch.failed', secret: SECRET }));
      expect(answer).toEqual({ status: 200, body: { success: true } });
      expect((await apps.runs()).map((run) => run.handler)).toEqual(['on(dispatch.failed)']);
    } finally {
      await apps.close();
    }
  });
});
