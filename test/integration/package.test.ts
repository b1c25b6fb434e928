// What the published package holds: its runtime dependencies, and the types in
// dist/ (built by npm test's pretest).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');

const declarationFiles = () => (readdirSync(join(ROOT, 'dist'), { recursive: true }) as string[]).filter((file) => file.endsWith('.d.ts'));

describe('the runtime dependencies', () => {
  it('are raw-body 3 and zod 4, nothing else', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(Object.keys(pkg.dependencies).sort()).toEqual(['raw-body', 'zod']);
    expect(pkg.dependencies['raw-body']).toMatch(/^\^3\./);
  });
});

describe('the public types in dist/', () => {
  it('ship no unique symbol or @internal member in any .d.ts', () => {
    const files = declarationFiles();
    expect(files.length).toBeGreaterThan(10);
    for (const file of files) {
      const text = readFileSync(join(ROOT, 'dist', file), 'utf8');
      expect({ file, symbol: /unique symbol|\[SYNC_STORE\]|@internal/.test(text) }).toEqual({ file, symbol: false });
    }
  });

  it('import @opentelemetry/api in no .d.ts, so a TypeScript app compiles without that optional peer', () => {
    const files = declarationFiles();
    expect(files.length).toBeGreaterThan(10);
    const importing = files.filter((file) => /(from|import\()\s*['"]@opentelemetry\/api['"]/.test(readFileSync(join(ROOT, 'dist', file), 'utf8')));
    expect(importing).toEqual([]);
  });
});
