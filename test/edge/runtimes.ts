import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build, type Plugin } from 'esbuild';
import { findRuntimes } from './find-runtimes';

/** The Web runtimes the edge tests run in: see find-runtimes.js for where they are looked for. */
const ROOT = path.join(__dirname, '../..');

export type RuntimeName = 'workerd' | 'deno' | 'bun';

export interface Runtime {
  name: RuntimeName;
  /** The program to start, and the arguments before the entry file. */
  command: string;
  args: string[];
  /** The export conditions its bundler (wrangler) or its own resolver uses. */
  conditions: string[];
}

/** The runtime, or why it cannot run here. */
export function findRuntime(name: RuntimeName): Runtime | string {
  const { deno, bun, workerd } = findRuntimes();
  if (name === 'deno') {
    return 'missing' in deno ? deno.missing : { name, command: deno.binary, args: ['run', '--allow-net', '--allow-env', '--no-prompt'], conditions: ['deno'] };
  }
  if (name === 'bun') return 'missing' in bun ? bun.missing : { name, command: bun.binary, args: ['run'], conditions: ['bun'] };
  if ('missing' in workerd) return workerd.missing;
  return { name, command: workerd.node, args: [path.join(__dirname, 'miniflare-runner.mjs'), workerd.miniflare], conditions: ['workerd', 'worker', 'browser'] };
}

/**
 * Describes the runtime's tests when it is installed; otherwise one skipped test
 * whose title says SKIPPED and why (Jest's global setup prints the same notice,
 * since Jest shows no output of a suite whose tests all skip).
 */
export function describeRuntime(name: RuntimeName, body: (runtime: Runtime) => void): void {
  const runtime = findRuntime(name);
  if (typeof runtime === 'string') {
    describe(`in ${name}`, () => {
      it.skip(`SKIPPED: ${runtime}`, () => undefined);
    });
    return;
  }
  describe(`in ${name}`, () => body(runtime));
}

export interface Served {
  url: string;
  output: () => string;
  stop: () => Promise<void>;
}

/**
 * The test apps import `src/web` (so they also run in-process under Jest); in a
 * runtime they get what the package gives that runtime instead: the file its
 * export condition names in package.json (dist/web/edge.mjs, built by npm test's pretest).
 */
function shippedWebEntry(conditions: string[]): Plugin {
  const exports = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, Record<string, { default: string }>> }).exports['./web']!;
  const file = path.join(ROOT, exports[conditions.find((condition) => condition in exports)!]!.default);
  if (!existsSync(file)) throw new Error(`${path.relative(ROOT, file)} is missing: run npm run build (npm test does)`);
  return {
    name: 'shipped-web-entry',
    setup(on) {
      on.onResolve({ filter: /(\/src\/web|^mitpo-webhooks\/web)$/ }, () => ({ path: file }));
    },
  };
}

/**
 * Bundles `entry` (a module whose default export is `{ fetch }`, as a Worker's)
 * for the runtime, with its export conditions and no Node built-in, then serves
 * it on 127.0.0.1 from the runtime and waits until it listens.
 */
export async function serve(runtime: Runtime, entry: string): Promise<Served> {
  const dir = mkdtempSync(path.join(tmpdir(), `mitpo-${runtime.name}-`));
  await build({
    entryPoints: { worker: entry },
    outdir: dir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    conditions: runtime.conditions,
    mainFields: ['module', 'main'],
    external: ['cloudflare:*'],
    tsconfig: path.join(ROOT, 'tsconfig.json'),
    plugins: [shippedWebEntry(runtime.conditions)],
    logLevel: 'silent',
  });
  let file = path.join(dir, 'worker.mjs');
  if (runtime.name === 'deno') {
    file = path.join(dir, 'serve.mjs');
    writeFileSync(
      file,
      "import worker from './worker.mjs';\n" +
        "Deno.serve({ hostname: '127.0.0.1', port: 0, onListen: ({ port }) => console.log(`listening on ${port}`) }, (request) => worker.fetch(request));\n",
    );
  } else if (runtime.name === 'bun') {
    file = path.join(dir, 'serve.mjs');
    writeFileSync(
      file,
      "import worker from './worker.mjs';\n" +
        "const server = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: (request) => worker.fetch(request) });\n" +
        'console.log(`listening on ${server.port}`);\n',
    );
  }
  const child = spawn(runtime.command, [...runtime.args, file], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DENO_DIR: path.join(dir, '.deno'), DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' },
  });
  let output = '';
  const port = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${runtime.name} did not listen within 60 s:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const match = /listening on (\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${runtime.name} exited (${code}) before listening:\n${output}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    output: () => output,
    stop: () => stopChild(child).then(() => rmSync(dir, { recursive: true, force: true })),
  };
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
