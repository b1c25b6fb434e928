#!/usr/bin/env bash
# Packs mitpo-webhooks and uses the tarball as a new project would: require(),
# import, the bin, and a TypeScript consumer under moduleResolution node16 and
# bundler. Run by .ci/run; needs only the npm registry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$root"
tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
echo "packed $tarball ($(du -k "$work/$tarball" | cut -f1) KB)"
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "./$tarball" bullmq@^6 typescript@~6.0 @types/node@^20 >/dev/null

echo "-- require()"
node -e "
const m = require('mitpo-webhooks');
const { signedDelivery } = require('mitpo-webhooks/testing');
const { RedisReplayStore } = require('mitpo-webhooks/redis');
const { BullMQDeliveryQueue } = require('mitpo-webhooks/bullmq');
if (typeof BullMQDeliveryQueue !== 'function') throw new Error('require: mitpo-webhooks/bullmq');
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
const required = createRequire(import.meta.url)('mitpo-webhooks');
if (required.WebhookVerificationError !== WebhookVerificationError) throw new Error('import and require see two different classes');
const w = new MitpoWebhooks({ secret: 'whsec_smoke' });
const d = signedDelivery({ event: 'dispatch.failed', secret: 'whsec_other' });
const error = await w.verify({ rawBody: d.body, headers: d.headers }).catch((e) => e);
if (!(error instanceof WebhookVerificationError) || error.code !== 'invalid_signature') throw new Error('import: ' + error);
if (!verifySignature('x', sign('x', 'whsec_smoke'), 'whsec_smoke') || typeof RedisReplayStore !== 'function') throw new Error('import');
console.log('import ok: one WebhookVerificationError class for import and require');
"

echo "-- bin"
npx --no-install mitpo-webhooks --help | head -n 1
echo '{"event":"connection.active","timestamp":"2026-03-22T10:30:00Z","data":{}}' | MITPO_WEBHOOK_SECRET=whsec_smoke npx --no-install mitpo-webhooks sign

echo "-- TypeScript consumers"
cat > consumer.ts <<'TS'
import { MitpoWebhooks, type MitpoEventOf } from 'mitpo-webhooks';
import { signedDelivery } from 'mitpo-webhooks/testing';
import { RedisReplayStore } from 'mitpo-webhooks/redis';
import { BullMQDeliveryQueue } from 'mitpo-webhooks/bullmq';

const webhooks = new MitpoWebhooks({ secret: 'whsec_smoke' });
export const queued = () => new MitpoWebhooks({ secret: 'whsec_smoke', queue: new BullMQDeliveryQueue({ connection: { url: 'redis://127.0.0.1:6379' } }) });
webhooks.on('dispatch.completed', (event: MitpoEventOf<'dispatch.completed'>) => {
  const id: string = event.data.dispatch_id;
  // @ts-expect-error: not a field of dispatch events
  void event.data.nope;
  return id;
});
// @ts-expect-error: not an event MITPO sends
webhooks.on('dispatch.complete', () => {});
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
echo "package smoke test passed"
