import { readFileSync } from 'node:fs';
import path from 'node:path';
import { builtinModules } from 'node:module';

// The order of checks, events, router and answers import no `node:` module, no
// Node built-in and nothing Node-only (raw-body), directly or through what they
// import: what is Node's comes in from the Node entries (platform/node-platform,
// the adapters), so a WebCrypto entry can reuse the same core.
const SRC = path.join(__dirname, '../../src');
const CORE = ['pipeline/delivery-pipeline.ts', 'pipeline/verified.ts', 'router/event-router.ts', 'events/schemas.ts', 'answers.ts', 'receiver/webhooks-core.ts', 'web/index.ts'];
const NODE_ONLY = new Set([...builtinModules, 'raw-body']);

function importsOf(file: string): string[] {
  const source = readFileSync(file, 'utf8');
  return [...source.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'/gm)].map((match) => match[1]!);
}

/** Every module reachable from `entry` by relative imports, with what each imports from outside. */
function moduleGraph(entry: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const visit = (file: string) => {
    if (graph.has(file)) return;
    const specifiers = importsOf(file);
    graph.set(file, specifiers.filter((specifier) => !specifier.startsWith('.')));
    for (const specifier of specifiers.filter((s) => s.startsWith('.'))) visit(`${path.resolve(path.dirname(file), specifier)}.ts`);
  };
  visit(path.join(SRC, entry));
  return graph;
}

describe('the core, ready for the edge', () => {
  it.each(CORE)('%s reaches no node: module and nothing Node-only', (entry) => {
    const graph = moduleGraph(entry);
    expect(graph.size).toBeGreaterThan(0);
    const offending = [...graph].flatMap(([file, external]) =>
      external.filter((specifier) => specifier.startsWith('node:') || NODE_ONLY.has(specifier)).map((specifier) => `${path.relative(SRC, file)} imports ${specifier}`),
    );
    expect(offending).toEqual([]);
  });

  it('finds a Node import where there is one (the check itself works)', () => {
    const external = [...moduleGraph('mitpo-webhooks.ts').values()].flat();
    expect(external).toContain('node:crypto');
    expect(external).toContain('raw-body');
  });

  it("uses no Node global at run time in the pipeline's modules", () => {
    const files = [...moduleGraph('pipeline/delivery-pipeline.ts').keys()];
    const uses = files.flatMap((file) => {
      const code = readFileSync(file, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/\/\/.*$/gm, '')
        // Text in messages (e.g. "process.env.MITPO_WEBHOOK_SECRET") is not a use.
        .replace(/'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`/g, "''");
      return [...code.matchAll(/\b(Buffer|process)\.\w+/g)].map((match) => `${path.relative(SRC, file)}: ${match[0]}`);
    });
    expect(uses).toEqual([]);
  });
});
