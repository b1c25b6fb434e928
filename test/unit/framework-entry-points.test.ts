import { execFileSync } from 'node:child_process';

const loaded = new Map<string, string[]>();

/** The files that requiring `entry` in a fresh process loads, matching `pattern`. */
function loadedBy(entry: string, pattern: RegExp): string[] {
  if (!loaded.has(entry)) {
    const script = `require(${JSON.stringify(entry)}); console.log(JSON.stringify(Object.keys(require.cache)))`;
    const output = execFileSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], {
      cwd: `${__dirname}/../..`,
      encoding: 'utf8',
    });
    loaded.set(entry, (JSON.parse(output) as string[]).map((file) => file.replaceAll('\\', '/')));
  }
  return loaded.get(entry)!.filter((file) => pattern.test(file));
}

// Each framework is an optional peer: an app must not need one it does not use.
const FASTIFY = /node_modules\/(fastify|fastify-plugin)\/|src\/fastify\/fastify-mitpo-webhooks/;
const KOA = /node_modules\/koa\/|src\/koa\//;
const NEST = /node_modules\/@nestjs\/|src\/nestjs\//;

describe('the framework entry points', () => {
  it('are none of them loaded by importing mitpo-webhooks', () => {
    expect(loadedBy('./src/index.ts', /node_modules\/(fastify|fastify-plugin|koa|@nestjs)\/|src\/(fastify|koa|nestjs)\//)).toEqual([]);
  });

  it('load only their own framework', () => {
    expect(loadedBy('./src/fastify/index.ts', KOA)).toEqual([]);
    expect(loadedBy('./src/fastify/index.ts', NEST)).toEqual([]);
    expect(loadedBy('./src/koa/index.ts', FASTIFY)).toEqual([]);
    expect(loadedBy('./src/koa/index.ts', NEST)).toEqual([]);
    // NestJS on Express must not need fastify installed: its Fastify route uses only fastify's types.
    expect(loadedBy('./src/nestjs/index.ts', FASTIFY)).toEqual([]);
    expect(loadedBy('./src/nestjs/index.ts', /node_modules\/fastify\//)).toEqual([]);
    expect(loadedBy('./src/nestjs/index.ts', KOA)).toEqual([]);
  });

  it('do load their framework glue (so the checks above can see a file when it is loaded)', () => {
    expect(loadedBy('./src/fastify/index.ts', FASTIFY).length).toBeGreaterThan(0);
    expect(loadedBy('./src/koa/index.ts', /src\/koa\//).length).toBeGreaterThan(0);
    expect(loadedBy('./src/nestjs/index.ts', /src\/nestjs\//).length).toBeGreaterThan(0);
  });
});
