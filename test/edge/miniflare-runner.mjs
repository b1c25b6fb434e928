// Serves a bundled Worker in workerd through miniflare, on 127.0.0.1, and says
// "listening on <port>". Run on Node 22+ (miniflare's floor) by test/edge/runtimes.ts:
//   node miniflare-runner.mjs <miniflare package dir> <worker.mjs>
// The Worker gets no compatibility flags: it must run without nodejs_compat.
// A Durable Object class the Worker exports as ReplayKeyObject is bound as REPLAY_KEYS.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [miniflareDir, scriptPath] = process.argv.slice(2);
const { Miniflare } = createRequire(join(miniflareDir, 'package.json'))('miniflare');
const script = readFileSync(scriptPath, 'utf8');
const mf = new Miniflare({
  modules: true,
  script,
  scriptPath,
  compatibilityDate: '2025-09-01',
  compatibilityFlags: [],
  host: '127.0.0.1',
  port: 0,
  bindings: { MITPO_WEBHOOK_SECRET: 'whsec_test_a1b2c3d4e5f6' },
  ...(/\bReplayKeyObject\b/.test(script) ? { durableObjects: { REPLAY_KEYS: 'ReplayKeyObject' } } : {}),
});
const url = await mf.ready;
console.log(`listening on ${url.port}`);
const stop = () => mf.dispose().finally(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
