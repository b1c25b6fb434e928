import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/**
 * Every ```ts block of the README is compiled under `strict`, each as a module of
 * its own, so a snippet a user copies type-checks against the real API. Names a
 * snippet uses without declaring (the app, the receiver, the user's own
 * functions) are declared once in PRELUDE.
 */
const ROOT = path.join(__dirname, '../..');
const WORK_DIR = path.join(ROOT, 'test/types/.readme-snippets');

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
}
export {};
`;

function readmeSnippets(): Array<{ line: number; code: string }> {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const snippets: Array<{ line: number; code: string }> = [];
  for (const match of readme.matchAll(/^( *)```ts\n([\s\S]*?)^\1```$/gm)) {
    const indent = match[1]!.length;
    const code = match[2]!.split('\n').map((line) => line.slice(indent)).join('\n');
    snippets.push({ line: readme.slice(0, match.index).split('\n').length + 1, code });
  }
  return snippets;
}

describe("the README's TypeScript", () => {
  it('compiles, every block, under strict', () => {
    const snippets = readmeSnippets();
    expect(snippets.length).toBe(readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('```ts\n').length - 1);
    rmSync(WORK_DIR, { recursive: true, force: true });
    mkdirSync(WORK_DIR, { recursive: true });
    try {
      writeFileSync(path.join(WORK_DIR, 'prelude.ts'), PRELUDE);
      const files = snippets.map(({ line, code }) => {
        const file = path.join(WORK_DIR, `readme-line-${line}.ts`);
        writeFileSync(file, `${code}\nexport {};\n`);
        return file;
      });
      const program = ts.createProgram([path.join(WORK_DIR, 'prelude.ts'), ...files], {
        strict: true,
        noEmit: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.ESNext,
        moduleResolution: ts.ModuleResolutionKind.Bundler,
        lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
        types: ['node', 'jest'],
        esModuleInterop: true,
        skipLibCheck: true,
        paths: {
          'mitpo-webhooks': [path.join(ROOT, 'src/index.ts')],
          'mitpo-webhooks/testing': [path.join(ROOT, 'src/testing/index.ts')],
          'mitpo-webhooks/redis': [path.join(ROOT, 'src/redis/index.ts')],
          'mitpo-webhooks/fastify': [path.join(ROOT, 'src/fastify/index.ts')],
          'mitpo-webhooks/koa': [path.join(ROOT, 'src/koa/index.ts')],
          'mitpo-webhooks/nestjs': [path.join(ROOT, 'src/nestjs/index.ts')],
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
