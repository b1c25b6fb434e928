import path from 'node:path';
import ts from 'typescript';

/**
 * TypeScript 6 no longer puts `@types/node` in every program (`types` defaults to
 * none), and an app that names no Node types itself (a Hono app on Node, a module that
 * only registers handlers) still loads ours. Every entry but `/web` uses Node's types
 * (`Buffer`, `node:http`), so each says it needs them; without that, `skipLibCheck:
 * false` failed on `Buffer`, and with it `ctx.rawBody` became `any` unseen. (Found by a
 * hunt.) `/web` must need none of Node's: it runs where there is no Node.
 */
const ROOT = path.join(__dirname, '../..');
const DIST = path.join(ROOT, 'dist');
const NODE_ENTRIES = ['index', 'testing/index', 'redis/index', 'bullmq/index', 'fastify/index', 'koa/index', 'nestjs/index', 'postgres/index', 'api/index'];

function programOf(entry: string, extension: '.d.ts' | '.d.mts', lib: string[]): ts.Program {
  return ts.createProgram([path.join(DIST, `${entry}${extension}`)], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    lib,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    skipLibCheck: false,
    types: [],
  });
}

function errorsIn(program: ts.Program): string[] {
  return ts
    .getPreEmitDiagnostics(program)
    .filter((diagnostic) => diagnostic.file?.fileName.startsWith(DIST) ?? true)
    .map((diagnostic) => `${diagnostic.file ? path.relative(ROOT, diagnostic.file.fileName) : ''}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`);
}

describe('the types in dist/ (built by npm test\'s pretest), in an app that names no Node types (TypeScript 6\'s default)', () => {
  it.each(NODE_ENTRIES)('%s brings in the Node types it uses, under import and require', (entry) => {
    expect(errorsIn(programOf(entry, '.d.ts', ['lib.es2022.d.ts']))).toEqual([]);
    expect(errorsIn(programOf(entry, '.d.mts', ['lib.es2022.d.ts']))).toEqual([]);
  });

  it('web/index needs none of them: it compiles with the DOM\'s types alone', () => {
    const program = programOf('web/index', '.d.ts', ['lib.es2022.d.ts', 'lib.dom.d.ts']);
    expect(errorsIn(program)).toEqual([]);
    const loaded = program.getSourceFiles().map((file) => file.fileName);
    expect(loaded.filter((name) => name.includes('/@types/node/'))).toEqual([]);
  });
});
