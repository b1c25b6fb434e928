import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/**
 * Every ```ts block of the README and of the pages in docs/ is compiled under
 * `strict`, each as a module of its own, so a snippet a user copies type-checks
 * against the real API. Names a snippet uses without declaring (the app, the
 * receiver, the user's own functions) are declared once in PRELUDE.
 */
const ROOT = path.join(__dirname, '../..');
const WORK_DIR = path.join(ROOT, 'test/types/.readme-snippets');

/** The README and every page of docs/, as paths relative to the repository. */
const PAGES = [
  'README.md',
  ...readdirSync(path.join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`),
];

const PRELUDE = `
import type { Express } from 'express';
import type { AnyEventHandler, DeliveryContext, MitpoEvent } from 'mitpo-webhooks';
declare global {
  const express: typeof import('express');
  const MitpoWebhooks: typeof import('mitpo-webhooks').MitpoWebhooks;
  const NestFactory: typeof import('@nestjs/core').NestFactory;
  class WorkerModule {}
  const app: Express;
  const webhooks: import('mitpo-webhooks').MitpoWebhooks;
  const handler: (event: MitpoEvent, ctx: DeliveryContext) => Promise<void>;
  const h: (event: MitpoEvent, ctx: DeliveryContext) => void;
  const anyHandler: AnyEventHandler;
  const rawBody: Buffer;
  const headers: Record<string, string>;
  const metrics: { increment(name: string): void };
  const vault: { read(path: string): Promise<{ secrets: string[] }> };
  const deadLetters: { save(record: object): Promise<void> };
  function report(error: Error): void;
  function markLive(dispatchId: string): Promise<void>;
  function canonicalJson(value: unknown): string;
  // The Web runtimes' globals the recipes of docs/web-runtimes.md use.
  const Deno: { env: { get(name: string): string | undefined }; serve(options: { port: number }, handler: (request: Request) => Response | Promise<Response>): unknown };
  const Bun: { env: Record<string, string | undefined>; serve(options: { port: number; routes: Record<string, (request: Request) => Promise<Response>> }): unknown };
  const Netlify: { env: { get(name: string): string | undefined } };
}
export {};
`;

function snippetsOf(page: string): Array<{ page: string; line: number; code: string }> {
  const text = readFileSync(path.join(ROOT, page), 'utf8');
  const snippets: Array<{ page: string; line: number; code: string }> = [];
  for (const match of text.matchAll(/^( *)```ts\n([\s\S]*?)^\1```$/gm)) {
    const indent = match[1]!.length;
    const code = match[2]!.split('\n').map((line) => line.slice(indent)).join('\n');
    snippets.push({ page, line: text.slice(0, match.index).split('\n').length + 1, code });
  }
  // Every opening fence was matched to its closing one: no block is skipped unseen.
  expect({ page, blocks: snippets.length }).toEqual({ page, blocks: text.split('```ts\n').length - 1 });
  return snippets;
}

/**
 * How an app's TypeScript resolves imports: as a bundler does, and as Node does for an
 * ES module (`"type": "module"`, `nodenext`), where a CommonJS package's default import
 * is its whole `module.exports` (so `import Redis from 'ioredis'` is no class there).
 */
const RESOLUTIONS = [
  { name: 'bundler', module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler },
  { name: 'nodenext, an ES module', module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext },
];

describe("the TypeScript of the README and of docs/", () => {
  it.each(RESOLUTIONS)('compiles, every block, under strict, resolved as $name', ({ module, moduleResolution }) => {
    const snippets = PAGES.flatMap(snippetsOf);
    rmSync(WORK_DIR, { recursive: true, force: true });
    mkdirSync(WORK_DIR, { recursive: true });
    try {
      writeFileSync(path.join(WORK_DIR, 'package.json'), '{ "type": "module" }\n');
      writeFileSync(path.join(WORK_DIR, 'prelude.ts'), PRELUDE);
      const files = snippets.map(({ page, line, code }) => {
        const file = path.join(WORK_DIR, `${page.replace(/\W/g, '-')}-line-${line}.ts`);
        writeFileSync(file, `${code}\nexport {};\n`);
        return file;
      });
      const program = ts.createProgram([path.join(WORK_DIR, 'prelude.ts'), ...files], {
        strict: true,
        noEmit: true,
        target: ts.ScriptTarget.ES2022,
        module,
        moduleResolution,
        lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
        types: ['node', 'jest'],
        esModuleInterop: true,
        skipLibCheck: true,
        paths: {
          'mitpo-webhooks': [path.join(ROOT, 'src/index.ts')],
          'mitpo-webhooks/testing': [path.join(ROOT, 'src/testing/index.ts')],
          'mitpo-webhooks/redis': [path.join(ROOT, 'src/redis/index.ts')],
          'mitpo-webhooks/bullmq': [path.join(ROOT, 'src/bullmq/index.ts')],
          'mitpo-webhooks/postgres': [path.join(ROOT, 'src/postgres/index.ts')],
          'mitpo-webhooks/api': [path.join(ROOT, 'src/api/index.ts')],
          'mitpo-webhooks/fastify': [path.join(ROOT, 'src/fastify/index.ts')],
          'mitpo-webhooks/koa': [path.join(ROOT, 'src/koa/index.ts')],
          'mitpo-webhooks/nestjs': [path.join(ROOT, 'src/nestjs/index.ts')],
          'mitpo-webhooks/web': [path.join(ROOT, 'src/web/index.ts')],
        },
        // NestJS's decorators are TypeScript's legacy ones, as every Nest app compiles them.
        experimentalDecorators: true,
        emitDecoratorMetadata: true,
      });
      const problems = ts
        .getPreEmitDiagnostics(program)
        .filter((d) => d.file === undefined || d.file.fileName.startsWith(WORK_DIR))
        .map((d) => `${d.file ? path.basename(d.file.fileName) : ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
      expect(problems).toEqual([]);
    } finally {
      rmSync(WORK_DIR, { recursive: true, force: true });
    }
  });
});

describe("the JavaScript of the README and of docs/ (the quick start's server.mjs)", () => {
  it('parses, every block, as an ES module', () => {
    const blocks = PAGES.flatMap((page) =>
      [...readFileSync(path.join(ROOT, page), 'utf8').matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => ({ page, code: m[1]! })),
    );
    expect(blocks.length).toBeGreaterThan(0);
    const problems = blocks.flatMap(({ page, code }) =>
      (ts.transpileModule(code, { fileName: 'snippet.mjs', reportDiagnostics: true, compilerOptions: { allowJs: true } }).diagnostics ?? []).map(
        (d) => `${page}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`,
      ),
    );
    expect(problems).toEqual([]);
  });
});

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function anchorOf(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** The anchors a page offers, numbered as GitHub numbers repeated headings. */
function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const [, heading] of withoutCode(text).matchAll(/^#{1,6} +(.+)$/gm)) {
    const anchor = anchorOf(heading!);
    const count = seen.get(anchor) ?? 0;
    seen.set(anchor, count + 1);
    anchors.add(count === 0 ? anchor : `${anchor}-${count}`);
  }
  return anchors;
}

/** The page without its fenced blocks, where `[x](y)` and `# x` are code, not Markdown. */
function withoutCode(text: string): string {
  return text.replace(/^( *)```[^\n]*\n[\s\S]*?^\1```$/gm, '');
}

/** Every relative link of a page: its target file (relative to the repository) and anchor. */
function relativeLinks(page: string): Array<{ page: string; href: string; file: string; anchor: string | undefined }> {
  const text = withoutCode(readFileSync(path.join(ROOT, page), 'utf8'));
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)]
    .map((match) => match[1]!)
    .filter((href) => !/^[a-z][a-z0-9+.-]*:/i.test(href))
    .map((href) => {
      const [target, anchor] = href.split('#') as [string, string | undefined];
      const file = target === '' ? page : path.posix.normalize(path.posix.join(path.posix.dirname(page), target));
      return { page, href, file, anchor };
    });
}

describe('the links of the README and of docs/', () => {
  it('reach every page of docs/ from the README', () => {
    const linked = new Set(relativeLinks('README.md').map((link) => link.file));
    expect(PAGES.filter((page) => page.startsWith('docs/') && !linked.has(page))).toEqual([]);
  });

  it('point, every relative one, at a file that exists and at a heading it has', () => {
    const links = PAGES.flatMap(relativeLinks);
    expect(links.length).toBeGreaterThan(PAGES.length);
    const broken = links.filter(({ file, anchor }) => {
      if (!existsSync(path.join(ROOT, file))) return true;
      if (anchor === undefined) return false;
      return !file.endsWith('.md') || !anchorsOf(readFileSync(path.join(ROOT, file), 'utf8')).has(anchor);
    });
    expect(broken.map(({ page, href }) => `${page}: ${href}`)).toEqual([]);
  });

  // Found by a hunt: the package shipped dist/ alone, so the README a user reads in
  // node_modules (or on the registry) linked to a docs/ that was not there. The
  // development notes (benchmarks, soak scripts) stay in the repository.
  it('point at files the package ships, but for the development notes', () => {
    const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' })) as Array<{ files: Array<{ path: string }> }>;
    const shipped = new Set(packed[0]!.files.map((file) => file.path));
    const missing = PAGES.flatMap(relativeLinks).filter(({ file }) => !shipped.has(file) && !/^(bench|scripts)\//.test(file));
    expect(missing.map(({ page, href }) => `${page}: ${href}`)).toEqual([]);
  });
});
