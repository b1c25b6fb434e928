#!/usr/bin/env bash
# Packs mitpo-webhooks and uses the tarball as a new project would: require(),
# import, the bin, and a TypeScript consumer under moduleResolution node16 and
# bundler; then, in a fresh project per framework (Fastify 5 and 4, Koa 3 and 2,
# NestJS 12 and 11 on Express and Fastify), serves one signed delivery over
# 127.0.0.1. Run by .ci/run after the build; packs dist/ as it is and needs only
# the npm registry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$root"
tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
echo "packed $tarball ($(du -k "$work/$tarball" | cut -f1) KB)"
# npm pack builds dist/ first (the prepack script), so the tarball holds it even
# from a fresh clone: every entry point package.json names must be in it.
listing=$(tar -tzf "$work/$tarball")
for file in $(node -e "
const pkg = require('./package.json');
const files = new Set([pkg.main, pkg.module, pkg.types, ...Object.values(pkg.bin)]);
(function walk(v) { if (typeof v === 'string') files.add(v); else if (v) Object.values(v).forEach(walk); })(pkg.exports);
for (const f of files) if (f.startsWith('./dist/') || f.startsWith('dist/')) console.log(f.replace(/^\.\//, ''));
"); do
  grep -qx "package/$file" <<<"$listing" || { echo "the tarball lacks $file" >&2; exit 1; }
done
echo "the tarball holds $(grep -c '^package/dist/' <<<"$listing") files under dist/, every entry point included"
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "./$tarball" bullmq@^6 pg@^8 @types/pg@^8 typescript@~6.0 @types/node@^20 >/dev/null

echo "-- require()"
node -e "
const m = require('mitpo-webhooks');
const { signedDelivery } = require('mitpo-webhooks/testing');
const { RedisReplayStore } = require('mitpo-webhooks/redis');
const { BullMQDeliveryQueue } = require('mitpo-webhooks/bullmq');
if (typeof BullMQDeliveryQueue !== 'function') throw new Error('require: mitpo-webhooks/bullmq');
const { PostgresDeliveryQueue } = require('mitpo-webhooks/postgres');
if (typeof PostgresDeliveryQueue !== 'function') throw new Error('require: mitpo-webhooks/postgres');
const w = new m.MitpoWebhooks({ secret: 'whsec_smoke' });
let ran = 0;
w.on('dispatch.completed', () => { ran += 1; });
const d = signedDelivery({ event: 'dispatch.completed', secret: 'whsec_smoke' });
w.receive({ rawBody: d.body, headers: d.headers }).then((r) => {
  if (r.status !== 200 || ran !== 1 || typeof RedisReplayStore !== 'function') throw new Error('require: ' + JSON.stringify(r));
  console.log('require ok:', r.status, JSON.stringify(r.body));
});
"

echo "-- import"
node --input-type=module -e "
import { createRequire } from 'node:module';
import { MitpoWebhooks, WebhookVerificationError, verifySignature, sign } from 'mitpo-webhooks';
import { signedDelivery } from 'mitpo-webhooks/testing';
import { RedisReplayStore } from 'mitpo-webhooks/redis';
import { BullMQDeliveryQueue } from 'mitpo-webhooks/bullmq';
if (typeof BullMQDeliveryQueue !== 'function') throw new Error('import: mitpo-webhooks/bullmq');
import { PostgresDeliveryQueue } from 'mitpo-webhooks/postgres';
if (typeof PostgresDeliveryQueue !== 'function') throw new Error('import: mitpo-webhooks/postgres');
const required = createRequire(import.meta.url)('mitpo-webhooks');
if (required.WebhookVerificationError !== WebhookVerificationError) throw new Error('import and require see two different classes');
const w = new MitpoWebhooks({ secret: 'whsec_smoke' });
const d = signedDelivery({ event: 'dispatch.failed', secret: 'whsec_other' });
const error = await w.verify({ rawBody: d.body, headers: d.headers }).catch((e) => e);
if (!(error instanceof WebhookVerificationError) || error.code !== 'invalid_signature') throw new Error('import: ' + error);
if (!verifySignature('x', sign('x', 'whsec_smoke'), 'whsec_smoke') || typeof RedisReplayStore !== 'function') throw new Error('import');
console.log('import ok: one WebhookVerificationError class for import and require');
"

echo "-- mitpo-webhooks/web (require, import, and the workerd condition as a Worker's bundler resolves it)"
node -e "
const { MitpoWebhooks, sign, verifySignature } = require('mitpo-webhooks/web');
const { signedDelivery } = require('mitpo-webhooks/testing');
const w = new MitpoWebhooks({ secret: 'whsec_smoke' });
let raw;
w.on('dispatch.completed', (event, ctx) => { raw = ctx.rawBody; });
const d = signedDelivery({ event: 'dispatch.completed', secret: 'whsec_smoke' });
(async () => {
  const r = await w.receive({ rawBody: d.body, headers: d.headers });
  if (r.status !== 200 || !(raw instanceof Uint8Array) || !(await verifySignature('x', await sign('x', 'whsec_smoke'), 'whsec_smoke'))) throw new Error('web require: ' + JSON.stringify(r));
  console.log('web require ok:', r.status, JSON.stringify(r.body));
})();
"
node --input-type=module -e "
import { MitpoWebhooks } from 'mitpo-webhooks/web';
if (typeof MitpoWebhooks !== 'function') throw new Error('web import');
console.log('web import ok');
"
node -e "
const path = require('node:path');
const pkg = require('mitpo-webhooks/package.json');
const file = path.join('node_modules/mitpo-webhooks', pkg.exports['./web'].workerd.default);
const code = require('node:fs').readFileSync(file, 'utf8');
const imports = [...code.matchAll(/^import .* from \"([^\"]+)\";\$/gm)].map((m) => m[1]);
// zod (zod/mini and its English messages) is the one dependency; nothing else, and nothing of Node's.
if (imports.length === 0 || !imports.every((name) => name === 'zod' || name.startsWith('zod/'))) throw new Error('the workerd bundle imports ' + JSON.stringify(imports));
console.log('web workerd condition ok: ' + pkg.exports['./web'].workerd.default + ' imports only zod');
"

echo "-- bin"
npx --no-install mitpo-webhooks --help | head -n 1
echo '{"event":"connection.active","timestamp":"2026-03-22T10:30:00Z","data":{}}' | MITPO_WEBHOOK_SECRET=whsec_smoke npx --no-install mitpo-webhooks sign

echo "-- TypeScript consumers"
cat > consumer.ts <<'TS'
import { MitpoWebhooks, type DeliveryContext, type MitpoEventOf } from 'mitpo-webhooks';
import { signedDelivery } from 'mitpo-webhooks/testing';
import { RedisReplayStore } from 'mitpo-webhooks/redis';
import { BullMQDeliveryQueue } from 'mitpo-webhooks/bullmq';
import { MitpoWebhooks as WebMitpoWebhooks } from 'mitpo-webhooks/web';
import { PostgresDeliveryQueue } from 'mitpo-webhooks/postgres';
import { Pool } from 'pg';

export const onTheEdge = new WebMitpoWebhooks({ secret: 'whsec_smoke' }).on('dispatch.completed', (_event, ctx) => {
  const bytes: Uint8Array = ctx.rawBody;
  return bytes.byteLength;
});
const webhooks = new MitpoWebhooks({ secret: 'whsec_smoke' });
export const exactlyOnce = () => {
  const inbox = new MitpoWebhooks({ secret: 'whsec_smoke', ordering: true, queue: new PostgresDeliveryQueue({ pool: new Pool() }) });
  inbox.on('dispatch.completed', async (event, ctx) => {
    await ctx.db!.query('update dispatches set status = $1 where id = $2', ['completed', event.data.dispatch_id]);
  });
  return inbox;
};
export const queued = () => new MitpoWebhooks({ secret: 'whsec_smoke', queue: new BullMQDeliveryQueue({ connection: { url: 'redis://127.0.0.1:6379' } }) });
webhooks.on('dispatch.completed', (event: MitpoEventOf<'dispatch.completed'>) => {
  const id: string = event.data.dispatch_id;
  // @ts-expect-error: not a field of dispatch events
  void event.data.nope;
  return id;
});
// @ts-expect-error: not an event MITPO sends
webhooks.on('dispatch.complete', () => {});
// On Node the bytes are a Buffer, in the handlers and in the exported types alike.
webhooks.onAny((_event, ctx) => ctx.rawBody.toString('base64'));
webhooks.onFailure((_error, context) => context.rawBody?.toString('base64'));
export const firstByte = (ctx: DeliveryContext) => ctx.rawBody.readUInt8(0);
export const keyedByHand = new MitpoWebhooks({ secret: 'whsec_smoke', deliveryKey: (_event, rawBody) => rawBody.toString('hex') });
export const deadLetters = () => queued().onDeadLetter((_event, ctx) => ctx.rawBody.toString('base64'));
const delivery: { body: string; headers: Record<string, string> } = signedDelivery({ event: 'dispatch.completed', secret: 'whsec_smoke' });
export const uses = [delivery, RedisReplayStore, webhooks.fetchHandler(), webhooks.middleware({ path: '/webhooks/mitpo' })];
TS
cp consumer.ts consumer-esm.mts
cat > tsconfig.node16.json <<'JSON'
{ "compilerOptions": { "module": "node16", "moduleResolution": "node16", "strict": true, "noEmit": true, "types": ["node"], "lib": ["ES2022", "DOM"] }, "files": ["consumer.ts", "consumer-esm.mts"] }
JSON
cat > tsconfig.bundler.json <<'JSON'
{ "compilerOptions": { "module": "esnext", "moduleResolution": "bundler", "strict": true, "noEmit": true, "types": ["node"], "lib": ["ES2022", "DOM"] }, "files": ["consumer.ts"] }
JSON
# One command a line: under set -e a failure in an && list would not stop the script.
npx --no-install tsc -p tsconfig.node16.json
echo "tsc moduleResolution node16 (CommonJS and ESM files): ok"
npx --no-install tsc -p tsconfig.bundler.json
echo "tsc moduleResolution bundler: ok"

# A Worker project: no Node types at all, and every declaration file checked, so
# nothing that mitpo-webhooks/web's types reach may name Buffer or a node: module.
cat > worker.ts <<'TS'
import { MitpoWebhooks, type DeliveryContext } from 'mitpo-webhooks/web';
const webhooks = new MitpoWebhooks({ secret: 'whsec_smoke' });
webhooks.on('dispatch.completed', (event, ctx: DeliveryContext) => {
  const bytes: Uint8Array = ctx.rawBody;
  // @ts-expect-error: a Uint8Array, not Node's Buffer
  void ctx.rawBody.toString('base64');
  return [event.data.dispatch_id, bytes.byteLength];
});
export default { fetch: webhooks.fetchHandler() };
TS
cat > tsconfig.worker.json <<'JSON'
{ "compilerOptions": { "module": "esnext", "moduleResolution": "bundler", "strict": true, "noEmit": true, "skipLibCheck": false, "types": [], "lib": ["ES2022", "WebWorker"] }, "files": ["worker.ts"] }
JSON
npx --no-install tsc -p tsconfig.worker.json
echo "tsc for a Worker without Node's types, declarations checked: ok"

# The frameworks: each version gets a project of its own, since two majors of one
# framework cannot share a node_modules and the adapters must work with what npm
# resolves for a consumer, not with this repository's devDependencies. The check
# scripts are written once here and copied into each project, so that they resolve
# the framework and mitpo-webhooks from that project's node_modules.
checks="$work/checks"
mkdir "$checks"

# Shared by every check: posts one signed delivery and throws unless it is answered
# 200 {"success":true} and ran the handler exactly once.
cat > "$checks/deliver.js" <<'JS'
const { signedDelivery } = require('mitpo-webhooks/testing');

// A server left open (a listener, a kept-alive socket) would keep the check running
// for ever and hang CI: fail instead. unref() so that it never keeps a process alive.
setTimeout(() => {
  console.error('check still running after 60 s: a server was not closed');
  process.exit(1);
}, 60_000).unref();

/** `ran` is the list the handler pushes each event's name onto. */
module.exports = async function deliverOnce(label, port, ran) {
  const d = signedDelivery({ event: 'dispatch.completed', secret: 'whsec_smoke' });
  const res = await fetch(`http://127.0.0.1:${port}/webhooks/mitpo`, { method: 'POST', headers: d.headers, body: d.body });
  const text = await res.text();
  if (res.status !== 200 || text !== '{"success":true}' || JSON.stringify(ran) !== '["dispatch.completed"]') {
    throw new Error(`${label}: answered ${res.status} ${text}, handler ran for ${JSON.stringify(ran)}`);
  }
};
JS

# The project's copy of a framework, for the ok line.
cat > "$checks/version.js" <<'JS'
const { readFileSync } = require('node:fs');
// From the file rather than require('<name>/package.json'): not every package exports it.
module.exports = (name) => JSON.parse(readFileSync(`node_modules/${name}/package.json`, 'utf8')).version;
JS

cat > "$checks/fastify.js" <<'JS'
const Fastify = require('fastify');
const { MitpoWebhooks } = require('mitpo-webhooks');
const { fastifyMitpoWebhooks } = require('mitpo-webhooks/fastify');
const deliverOnce = require('./deliver.js');
const version = require('./version.js');

async function main() {
  const ran = [];
  const webhooks = new MitpoWebhooks({ secret: 'whsec_smoke' });
  webhooks.on('dispatch.completed', (event) => { ran.push(event.event); });
  const app = Fastify();
  await app.register(fastifyMitpoWebhooks, { webhooks, path: '/webhooks/mitpo' });
  // The plugin's raw-bytes parser must stay on its own route: the app's JSON routes still parse.
  app.post('/orders', async (req) => req.body);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address();
  await deliverOnce('fastify', port, ran);
  const res = await fetch(`http://127.0.0.1:${port}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"id":1}' });
  const text = await res.text();
  if (res.status !== 200 || text !== '{"id":1}') throw new Error(`fastify /orders: answered ${res.status} ${text}`);
  await app.close();
  console.log(`fastify ${version('fastify')} ok: delivery 200 {"success":true}, handler ran once; /orders still parses JSON`);
}
main().catch((error) => {
  console.error(error);
  process.exit(1);
});
JS

# import gives the plugin as the default export, the very function require() gives.
cat > "$checks/fastify-esm.mjs" <<'JS'
import { createRequire } from 'node:module';
import Fastify from 'fastify';
import { MitpoWebhooks } from 'mitpo-webhooks';
import fastifyMitpoWebhooks from 'mitpo-webhooks/fastify';
import deliverOnce from './deliver.js';
import version from './version.js';

const required = createRequire(import.meta.url)('mitpo-webhooks/fastify');
if (typeof fastifyMitpoWebhooks !== 'function' || fastifyMitpoWebhooks !== required.fastifyMitpoWebhooks) {
  throw new Error('fastify import: the default export is not the plugin require() gives');
}
const ran = [];
const webhooks = new MitpoWebhooks({ secret: 'whsec_smoke' });
webhooks.on('dispatch.completed', (event) => { ran.push(event.event); });
const app = Fastify();
await app.register(fastifyMitpoWebhooks, { webhooks, path: '/webhooks/mitpo' });
await app.listen({ port: 0, host: '127.0.0.1' });
await deliverOnce('fastify import', app.server.address().port, ran);
await app.close();
console.log(`fastify ${version('fastify')} ok from import: the default export is the plugin and serves the delivery`);
JS

# An entry point from import: the same functions as require() gives (one copy of
# the code, so one set of handlers), for the names given after it.
cat > "$checks/esm-entry.mjs" <<'JS'
import { createRequire } from 'node:module';
const [entry, ...names] = process.argv.slice(2);
const imported = await import(entry);
const required = createRequire(import.meta.url)(entry);
for (const name of names) {
  if (typeof imported[name] !== 'function' || imported[name] !== required[name]) throw new Error(`import ${entry}: ${name}`);
}
console.log(`import ${entry} ok: ${names.join(', ')} as require() gives them`);
JS

cat > "$checks/koa.js" <<'JS'
const http = require('node:http');
const Koa = require('koa');
const { MitpoWebhooks } = require('mitpo-webhooks');
const { koaMitpoWebhooks } = require('mitpo-webhooks/koa');
const deliverOnce = require('./deliver.js');
const version = require('./version.js');

async function main() {
  const ran = [];
  const webhooks = new MitpoWebhooks({ secret: 'whsec_smoke' });
  webhooks.on('dispatch.completed', (event) => { ran.push(event.event); });
  const app = new Koa();
  app.use(koaMitpoWebhooks(webhooks, { path: '/webhooks/mitpo' }));
  // Other paths must go on to the next middleware.
  app.use((ctx) => { ctx.body = 'next'; });
  const server = http.createServer(app.callback());
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await deliverOnce('koa', port, ran);
  const res = await fetch(`http://127.0.0.1:${port}/orders`);
  const text = await res.text();
  if (res.status !== 200 || text !== 'next') throw new Error(`koa /orders: answered ${res.status} ${text}`);
  await new Promise((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
  console.log(`koa ${version('koa')} ok: delivery 200 {"success":true}, handler ran once; other paths reach next()`);
}
main().catch((error) => {
  console.error(error);
  process.exit(1);
});
JS

# Plain CommonJS with the decorators applied as functions, so that it runs without
# a compiler; NestJS 12 is ESM only and comes in through require(esm).
cat > "$checks/nestjs.js" <<'JS'
require('reflect-metadata');
const { Module, Injectable } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { FastifyAdapter } = require('@nestjs/platform-fastify');
const { MitpoWebhooksModule, OnMitpoEvent } = require('mitpo-webhooks/nestjs');
const deliverOnce = require('./deliver.js');
const version = require('./version.js');

const ran = [];
class Handlers {
  completed(event) { ran.push(event.event); }
}
OnMitpoEvent('dispatch.completed')(Handlers.prototype, 'completed', Object.getOwnPropertyDescriptor(Handlers.prototype, 'completed'));
Injectable()(Handlers);
class AppModule {}
Module({ imports: [MitpoWebhooksModule.forRoot({ secret: 'whsec_smoke', path: '/webhooks/mitpo' })], providers: [Handlers] })(AppModule);

// Each run is a new app, hence a new receiver and a new Handlers: one delivery, one run.
async function serveOnce(label, makeAdapter, options) {
  ran.length = 0;
  const app = makeAdapter === undefined
    ? await NestFactory.create(AppModule, { logger: false, ...options })
    : await NestFactory.create(AppModule, makeAdapter(), { logger: false, ...options });
  await app.listen(0, '127.0.0.1');
  await deliverOnce(`nestjs ${label}`, app.getHttpServer().address().port, ran);
  await app.close();
  return label;
}

async function main() {
  const served = [];
  // Express is NestFactory's default platform.
  served.push(await serveOnce('express', undefined, {}));
  served.push(await serveOnce('express rawBody', undefined, { rawBody: true }));
  served.push(await serveOnce('fastify', () => new FastifyAdapter(), {}));
  served.push(await serveOnce('fastify rawBody', () => new FastifyAdapter(), { rawBody: true }));
  console.log(`nestjs ${version('@nestjs/core')} ok: ${served.join(', ')}: delivery 200 {"success":true}, handler ran once each`);
}
main().catch((error) => {
  console.error(error);
  process.exit(1);
});
JS

# A fresh project in $work/<dir> with the tarball packed above and the given packages.
fresh_project() {
  local dir="$work/$1"
  shift
  mkdir "$dir"
  cd "$dir"
  npm init -y >/dev/null
  npm install --no-audit --no-fund --silent "$work/$tarball" "$@" >/dev/null
  cp "$checks/deliver.js" "$checks/version.js" .
}

# The plugin's .d.ts names the app's own 'fastify' types, so each major is compiled
# against: this consumer must type-check under Fastify 4 and 5 alike.
cat > "$checks/fastify-consumer.ts" <<'TS'
import Fastify from 'fastify';
import { MitpoWebhooks } from 'mitpo-webhooks';
import fastifyDefault, { fastifyMitpoWebhooks } from 'mitpo-webhooks/fastify';

const webhooks = new MitpoWebhooks({ secret: 'whsec_smoke' });
export const app = Fastify();
void app.register(fastifyMitpoWebhooks, { webhooks, path: '/webhooks/mitpo' });
void app.register(fastifyDefault, { webhooks, path: '/webhooks/mitpo', prefix: '/hooks' });
// @ts-expect-error: path is required
void app.register(fastifyMitpoWebhooks, { webhooks });
TS
# The same from an ES module: there the default import is typed by the .d.mts.
cp "$checks/fastify-consumer.ts" "$checks/fastify-consumer-esm.mts"
cat > "$checks/tsconfig.fastify.json" <<'JSON'
{ "compilerOptions": { "module": "node16", "moduleResolution": "node16", "strict": true, "noEmit": true, "esModuleInterop": true, "skipLibCheck": true, "types": ["node"], "lib": ["ES2022", "DOM"] }, "files": ["fastify-consumer.ts", "fastify-consumer-esm.mts"] }
JSON

echo "-- Fastify 5"
fresh_project fastify5 fastify@^5 fastify-plugin@^6
cp "$checks/fastify.js" "$checks/fastify-esm.mjs" "$checks"/fastify-consumer* "$checks/tsconfig.fastify.json" .
node fastify.js
node fastify-esm.mjs
node "$work/node_modules/typescript/bin/tsc" -p tsconfig.fastify.json
echo "fastify 5 TypeScript consumers (CommonJS and ESM): ok"

echo "-- Fastify 4"
fresh_project fastify4 fastify@^4 fastify-plugin@^6
cp "$checks/fastify.js" "$checks"/fastify-consumer* "$checks/tsconfig.fastify.json" .
node fastify.js
node "$work/node_modules/typescript/bin/tsc" -p tsconfig.fastify.json
echo "fastify 4 TypeScript consumers (CommonJS and ESM): ok"

echo "-- Koa 3"
fresh_project koa3 koa@^3
cp "$checks/koa.js" "$checks/esm-entry.mjs" .
node koa.js
node esm-entry.mjs mitpo-webhooks/koa koaMitpoWebhooks

echo "-- Koa 2"
fresh_project koa2 koa@^2
cp "$checks/koa.js" .
node koa.js

echo "-- NestJS 12 (Express and Fastify)"
fresh_project nestjs12 @nestjs/core@^12 @nestjs/common@^12 @nestjs/platform-express@^12 @nestjs/platform-fastify@^12 reflect-metadata rxjs
cp "$checks/nestjs.js" "$checks/esm-entry.mjs" .
node nestjs.js
node esm-entry.mjs mitpo-webhooks/nestjs MitpoWebhooksModule OnMitpoEvent

echo "-- NestJS 11 (Express and Fastify)"
fresh_project nestjs11 @nestjs/core@^11 @nestjs/common@^11 @nestjs/platform-express@^11 @nestjs/platform-fastify@^11 reflect-metadata rxjs
cp "$checks/nestjs.js" "$checks/esm-entry.mjs" .
node nestjs.js
node esm-entry.mjs mitpo-webhooks/nestjs MitpoWebhooksModule OnMitpoEvent

echo "package smoke test passed"
