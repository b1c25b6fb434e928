import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build, type Plugin } from 'esbuild';
import pkg from '../../package.json';

// mitpo-webhooks/web loads where there is no Node: nothing in its module graph is
// a `node:` module or a Node built-in, under any export condition. Bundled for a
// neutral platform, where esbuild knows no built-in, every import of one is
// caught here (and would otherwise fail to resolve).
const ROOT = path.join(__dirname, '../..');
const BUILTIN = new RegExp(`^(node:.*|${builtinModules.map((name) => name.replace(/[/.]/g, '\\$&')).join('|')})(/.*)?$`);
const CONDITION_SETS: string[][] = [['workerd', 'worker', 'browser'], ['deno'], ['bun'], ['import'], ['require']];

/** The Node built-ins `entry` reaches, as "importer imports specifier"; the build's own errors fail the test. */
async function nodeImportsOf(entry: { file: string } | { source: string; dir: string }, conditions: string[]): Promise<string[]> {
  const found: string[] = [];
  const catchBuiltins: Plugin = {
    name: 'catch-node-builtins',
    setup(on) {
      on.onResolve({ filter: BUILTIN }, (args) => {
        found.push(`${path.relative(ROOT, args.importer)} imports ${args.path}`);
        return { path: args.path, external: true };
      });
    },
  };
  await build({
    ...('file' in entry ? { entryPoints: [entry.file] } : { stdin: { contents: entry.source, resolveDir: entry.dir } }),
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'neutral',
    conditions,
    mainFields: ['module', 'main'],
    nodePaths: [path.join(ROOT, 'node_modules')],
    plugins: [catchBuiltins],
    logLevel: 'silent',
  });
  return found;
}

describe('mitpo-webhooks/web, bundled for a neutral platform', () => {
  it.each(CONDITION_SETS.map((set) => [set.join(', '), set]))('reaches no Node built-in from the sources (conditions: %s)', async (_label, conditions) => {
    expect(await nodeImportsOf({ file: path.join(ROOT, 'src/web/index.ts') }, conditions as string[])).toEqual([]);
  });

  describe('as the package resolves it (dist/, through package.json exports)', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'mitpo-web-bundle-'));
      mkdirSync(path.join(dir, 'node_modules'));
      symlinkSync(ROOT, path.join(dir, 'node_modules', 'mitpo-webhooks'), 'dir');
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it.each(CONDITION_SETS.map((set) => [set.join(', '), set]))('reaches no Node built-in (conditions: %s)', async (_label, conditions) => {
      const source = "export { MitpoWebhooks, sign, verifySignature } from 'mitpo-webhooks/web';";
      expect(await nodeImportsOf({ source, dir }, conditions as string[])).toEqual([]);
    });

    it("takes zod/mini and never classic zod, whose methods can't be shaken out (issue #21)", async () => {
      // What a Worker that registers a handler bundles: the event schemas are zod/mini
      // ones, and nothing on the /web path (the API client's classic schemas included)
      // brings classic zod back.
      const source = `import { MitpoWebhooks } from 'mitpo-webhooks/web';
        const webhooks = new MitpoWebhooks({ secret: 'whsec_size' });
        webhooks.on('dispatch.completed', (event) => console.log(event.data.dispatch_id));
        export default { fetch: webhooks.fetchHandler() };`;
      const result = await build({
        stdin: { contents: source, resolveDir: dir },
        bundle: true,
        write: false,
        metafile: true,
        format: 'esm',
        platform: 'neutral',
        conditions: ['workerd', 'worker', 'browser'],
        mainFields: ['module', 'main'],
        nodePaths: [path.join(ROOT, 'node_modules')],
        logLevel: 'silent',
      });
      // The modules with code in the bundle, not all esbuild looked at.
      const [output] = Object.values(result.metafile.outputs);
      const zodFiles = Object.entries(output!.inputs)
        .filter(([file, input]) => file.includes('node_modules/zod/') && input.bytesInOutput > 0)
        .map(([file]) => file);
      expect(zodFiles).toEqual(expect.arrayContaining([expect.stringContaining('zod/v4/mini/')]));
      expect(zodFiles.filter((file) => file.includes('zod/v4/classic/'))).toEqual([]);
    });
  });

  it('gives the Web runtimes the ES module bundle, and Node its CommonJS build with the ESM wrapper', () => {
    const web = pkg.exports['./web'];
    for (const condition of ['workerd', 'worker', 'browser', 'deno', 'bun'] as const) {
      expect(web[condition]).toEqual({
        require: { types: './dist/web/index.d.ts', default: './dist/web/index.js' },
        types: './dist/web/index.d.mts',
        default: './dist/web/edge.mjs',
      });
    }
    expect(web.import.default).toBe('./dist/web/index.mjs');
    expect(web.require.default).toBe('./dist/web/index.js');
    // The runtimes' conditions come before import/require, or they would never be reached.
    expect(Object.keys(web).slice(-2)).toEqual(['import', 'require']);
  });

  // Found by a hunt: under a Web runtime's condition, `require` was given the ES module
  // bundle, which it cannot load: a Jest suite on jsdom (which resolves `browser`), or code
  // compiled to CommonJS, failed to start with "Must use import to load ES Module".
  // (Node 20.19 and later load an ES module with require(); a loader without that, as
  // Jest's, cannot: so what require() resolves to is checked, then that it runs.)
  it.each(['browser', 'worker', 'workerd', 'deno', 'bun'])('gives require() the CommonJS build under the %s condition', (condition) => {
    const script =
      "console.log(require('node:path').relative(process.cwd(), require.resolve('mitpo-webhooks/web')));" +
      "const { MitpoWebhooks, sign } = require('mitpo-webhooks/web');" +
      "sign('x', 'whsec_unit').then((header) => console.log(typeof MitpoWebhooks, header.slice(0, 7)));";
    const printed = execFileSync(process.execPath, [`--conditions=${condition}`, '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(printed.trim().split('\n')).toEqual(['dist/web/index.js', 'function sha256=']);
  });

  it('catches a Node built-in where there is one (the check itself works)', async () => {
    const found = await nodeImportsOf({ file: path.join(ROOT, 'src/index.ts') }, ['import']);
    // Both forms: a `node:` specifier of ours, and a bare built-in name in a dependency (raw-body).
    expect(found).toEqual(expect.arrayContaining([expect.stringMatching(/imports node:crypto$/), expect.stringMatching(/raw-body\/index.js imports async_hooks$/)]));
  });
});
