// `npm run bundle-size`: a minimal Cloudflare Worker that verifies webhooks,
// bundled the way wrangler bundles one (esbuild, ES module, the workerd / worker /
// browser conditions, minified), then gzipped: for mitpo-webhooks/web as the
// packed package resolves it (dist/, through package.json's exports), beside
// @octokit/webhooks and standardwebhooks, the same way. Each Worker registers a
// handler and answers a delivery, so nothing the verification needs is shaken out.
import { mkdtempSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const GOAL_KB = 30;

const WORKERS = {
  'mitpo-webhooks/web': `
    import { MitpoWebhooks } from 'mitpo-webhooks/web';
    const webhooks = new MitpoWebhooks({ secret: 'whsec_size' });
    webhooks.on('dispatch.completed', (event) => console.log(event.data.dispatch_id));
    export default { fetch: webhooks.fetchHandler() };`,
  '@octokit/webhooks': `
    import { Webhooks } from '@octokit/webhooks';
    const webhooks = new Webhooks({ secret: 'size' });
    webhooks.on('push', (event) => console.log(event.id));
    export default {
      async fetch(request) {
        await webhooks.verifyAndReceive({ id: request.headers.get('x-github-delivery'), name: request.headers.get('x-github-event'),
          payload: await request.text(), signature: request.headers.get('x-hub-signature-256') });
        return new Response('ok');
      },
    };`,
  standardwebhooks: `
    import { Webhook } from 'standardwebhooks';
    const webhook = new Webhook('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
    export default {
      async fetch(request) {
        const event = webhook.verify(await request.text(), Object.fromEntries(request.headers));
        return Response.json({ ok: true, type: event.type });
      },
    };`,
};

async function measure(name, source, dir) {
  const result = await build({
    stdin: { contents: source, resolveDir: dir, sourcefile: 'worker.js' },
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    conditions: ['workerd', 'worker', 'browser'],
    mainFields: ['module', 'main'],
    nodePaths: [join(root, 'node_modules')],
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const code = result.outputFiles[0].contents;
  const kb = (bytes) => bytes / 1024;
  const zodBytes = Object.entries(result.metafile.outputs[Object.keys(result.metafile.outputs)[0]].inputs)
    .filter(([file]) => file.includes('node_modules/zod/'))
    .reduce((sum, [, input]) => sum + input.bytesInOutput, 0);
  return { name, minified: kb(code.length), gzipped: kb(gzipSync(code, { level: 9 }).length), zodMinified: kb(zodBytes) };
}

// The package as an app gets it: node_modules/mitpo-webhooks is this checkout (its dist/).
const dir = mkdtempSync(join(tmpdir(), 'mitpo-bundle-size-'));
try {
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(root, join(dir, 'node_modules', 'mitpo-webhooks'), 'dir');
  console.log('a minimal Worker, bundled as wrangler does (esbuild, ESM, workerd/worker/browser conditions), minified, gzip -9\n');
  console.log(`${'library'.padEnd(22)} ${'minified'.padStart(10)} ${'gzipped'.padStart(10)}`);
  const rows = [];
  for (const [name, source] of Object.entries(WORKERS)) rows.push(await measure(name, source, dir));
  for (const row of rows) {
    const zod = row.zodMinified > 0 ? `  (zod: ${row.zodMinified.toFixed(1)} KB of the minified code)` : '';
    console.log(`${row.name.padEnd(22)} ${`${row.minified.toFixed(1)} KB`.padStart(10)} ${`${row.gzipped.toFixed(1)} KB`.padStart(10)}${zod}`);
  }
  const ours = rows[0];
  console.log(`\ngoal for mitpo-webhooks/web, zod included: ≤ ${GOAL_KB} KB gzipped: ${ours.gzipped <= GOAL_KB ? 'met' : 'MISSED'} (${ours.gzipped.toFixed(1)} KB)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
