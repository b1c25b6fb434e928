// One benchmark receiver, chosen by name (argv[2]), in a process of its own.
// Reports its CPU time, handler runs and peak RSS over IPC, so the orchestrator
// can measure exactly the timed window.
import http from 'node:http';
import Module, { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import express from 'express';
import Fastify from 'fastify';
import { fastifyMitpoWebhooks } from 'mitpo-webhooks/fastify';
import { Webhooks as OctokitWebhooks, createNodeMiddleware as octokitMiddleware } from '@octokit/webhooks';
import { MemoryReplayStore, MitpoWebhooks, parseEvent } from 'mitpo-webhooks';
import { createHash } from 'node:crypto';
import { createReplayCheckByHand, verifyByHand } from './hand-written.mjs';
import { serveForBench } from './serve-for-bench.mjs';

export const SECRET = 'whsec_bench_0123456789abcdef';
const PATH = '/webhooks/mitpo';
const OK = '{"success":true}';
const DUPLICATE = '{"success":true,"duplicate":true}';
const JSON_TYPE = 'application/json; charset=utf-8';
let runs = 0;

/** Every receiver's handler is async, as users write them: the work a delivery triggers is I/O. */
async function handleEvent() {
  runs += 1;
}

function readBody(req, done) {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => done(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
}

function answer(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function mitpo() {
  const replay = process.env.BENCH_NO_REPLAY ? false : process.env.BENCH_MAX_ENTRIES ? new MemoryReplayStore({ maxEntries: Number(process.env.BENCH_MAX_ENTRIES) }) : undefined;
  const webhooks = new MitpoWebhooks({ secret: SECRET, limit: '1mb', ...(replay === undefined ? {} : { replay }) });
  webhooks.onAny(handleEvent);
  return webhooks;
}

/** The same hand-written verification, with or without a replay check, as an async Fastify route on raw buffers. */
function handWrittenFastify(replay) {
  const app = Fastify();
  const firstTime = createReplayCheckByHand();
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: 1024 * 1024 }, (_request, body, done) => done(null, body));
  app.post(PATH, async (request, reply) => {
    const event = verifyByHand(request.body, request.headers, SECRET, 300);
    reply.header('content-type', JSON_TYPE);
    if (event === undefined) return reply.code(401).send('{"success":false}');
    if (replay && !firstTime(request.body)) return reply.send(DUPLICATE);
    await handleEvent(event);
    return reply.send(OK);
  });
  return app;
}

/** Receivers by name; a Fastify app is served through its own server once ready. The order is the table's. */
const scenarios = {
  'bare node:http': () =>
    http.createServer((req, res) => readBody(req, () => answer(res, 200, OK))),

  'hand-written on node:http': () =>
    http.createServer((req, res) =>
      readBody(req, async (raw) => {
        const event = verifyByHand(raw, req.headers, SECRET, 300);
        if (event === undefined) return answer(res, 401, '{"success":false}');
        await handleEvent(event);
        answer(res, 200, OK);
      }),
    ),

  'hand-written on node:http + Map replay check': () => {
    const firstTime = createReplayCheckByHand();
    return http.createServer((req, res) =>
      readBody(req, async (raw) => {
        const event = verifyByHand(raw, req.headers, SECRET, 300);
        if (event === undefined) return answer(res, 401, '{"success":false}');
        if (!firstTime(raw)) return answer(res, 200, DUPLICATE);
        await handleEvent(event);
        answer(res, 200, OK);
      }),
    );
  },

  'mitpo-webhooks on node:http': () => {
    const middleware = mitpo().middleware();
    return http.createServer((req, res) => middleware(req, res, () => answer(res, 404, '{}')));
  },

  '@octokit/webhooks on node:http': () => {
    const webhooks = new OctokitWebhooks({ secret: SECRET });
    webhooks.on('push', handleEvent);
    return http.createServer(octokitMiddleware(webhooks, { path: PATH, log: { debug() {}, info() {}, warn() {}, error() {} } }));
  },

  'Express 5 + express.raw() + hand-written': () => {
    const app = express();
    app.post(PATH, express.raw({ type: 'application/json', limit: '1mb' }), async (req, res) => {
      const event = verifyByHand(req.body, req.headers, SECRET, 300);
      if (event === undefined) return answer(res, 401, '{"success":false}');
      await handleEvent(event);
      answer(res, 200, OK);
    });
    return http.createServer(app);
  },

  'mitpo-webhooks on Express 5': () => {
    const app = express();
    app.post(PATH, mitpo().middleware());
    return http.createServer(app);
  },

  'Fastify 5, hand-written': () => handWrittenFastify(false),

  'Fastify 5, hand-written + Map replay check': () => handWrittenFastify(true),

  'mitpo-webhooks on Fastify 5': () => {
    const app = Fastify();
    app.register(fastifyMitpoWebhooks, { webhooks: mitpo(), path: PATH });
    return app;
  },
};

/**
 * `npm run bench -- --floors`: the hand-written receiver of (3), given what
 * mitpo-webhooks does per delivery one step at a time, through public API only:
 * the event validated by zod (`parseEvent`), then its signed timestamp's age
 * checked, then `MemoryReplayStore`'s claim and completion (awaited) in place of
 * the Map. What the last costs is the floor for the library's semantics written
 * by hand; the rest of mitpo-webhooks' cost is its own code.
 */
function handWrittenWith(steps) {
  const firstTime = createReplayCheckByHand();
  const store = new MemoryReplayStore();
  let claims = 0;
  return http.createServer((req, res) =>
    readBody(req, async (raw) => {
      let event = verifyByHand(raw, req.headers, SECRET, 300);
      if (event === undefined) return answer(res, 401, '{"success":false}');
      event = parseEvent(event);
      if (steps >= 2 && Math.abs(Date.now() - Date.parse(event.timestamp)) > 300_000) return answer(res, 400, '{"success":false}');
      if (steps < 3) {
        if (!firstTime(raw)) return answer(res, 200, DUPLICATE);
        await handleEvent(event);
        return answer(res, 200, OK);
      }
      const key = createHash('sha256').update(raw).digest('hex');
      const token = `bench.${(claims += 1)}`;
      if ((await store.claim(key, 60_000, token)) !== 'claimed') return answer(res, 200, DUPLICATE);
      await handleEvent(event);
      await store.complete(key, 600_000, token);
      answer(res, 200, OK);
    }),
  );
}

const floorScenarios = {
  'floor: (3) + zod': () => handWrittenWith(1),
  'floor: (3) + zod + event age': () => handWrittenWith(2),
  'floor: zod + event age + MemoryReplayStore': () => handWrittenWith(3),
};

/**
 * `npm run bench -- --otel`: the same receiver with OpenTelemetry absent (its
 * package hidden from require), with the API but no SDK, and with an SDK that
 * records into memory.
 */
const otelScenarios = {
  'otel: package absent': () => {
    const resolve = Module._resolveFilename;
    Module._resolveFilename = function hideOtel(request, ...rest) {
      if (request === '@opentelemetry/api') throw Object.assign(new Error(`Cannot find module '${request}'`), { code: 'MODULE_NOT_FOUND' });
      return resolve.call(this, request, ...rest);
    };
    return scenarios['mitpo-webhooks on node:http']();
  },
  'otel: API, no SDK': () => scenarios['mitpo-webhooks on node:http'](),
  'otel: SDK, in-memory exporter': () => {
    const require = createRequire(import.meta.url);
    const { context, metrics, trace } = require('@opentelemetry/api');
    const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
    const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
    const { MeterProvider, InMemoryMetricExporter, PeriodicExportingMetricReader, AggregationTemporality } = require('@opentelemetry/sdk-metrics');
    const spans = new InMemorySpanExporter();
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 1000 })] }));
    // The exporter keeps what it is given: empty it now and then, so memory stays flat.
    setInterval(() => spans.reset(), 1000).unref();
    return scenarios['mitpo-webhooks on node:http']();
  },
};

export const SCENARIOS = Object.keys(scenarios);
export const OTEL_SCENARIOS = Object.keys(otelScenarios);
export const FLOOR_SCENARIOS = Object.keys(floorScenarios);
Object.assign(scenarios, otelScenarios, floorScenarios);

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const made = scenarios[process.argv[2]]();
  // A Fastify app serves through its own server once ready.
  serveForBench(typeof made.ready === 'function' ? (await made.ready(), made.server) : made, { runs: () => runs });
}
