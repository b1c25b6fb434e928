// Builds dist/: the CommonJS code and its types with tsc, then a thin ESM wrapper
// per entry point. The wrappers re-export the CommonJS build instead of being a
// second copy of the code, so an app that mixes require() and import still has
// one MitpoWebhooks class, one WebhookVerificationError (instanceof works) and
// one set of handlers.
//
// The Web runtimes' conditions of `./web` (workerd, worker, browser, deno, bun)
// name a real ES module instead: the web entry bundled by esbuild with its
// dependencies (zod) left as imports, so a Worker's bundler can tree-shake zod
// (through the CommonJS build it would take all of it) and no runtime needs
// CommonJS support. On Node, `import` and `require` keep to the rule above.
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
// Every entry point package.json exports, by its CommonJS file: one list to keep.
const entries = Object.values(pkg.exports)
  .filter((target) => typeof target === 'object')
  .map((target) => target.require.default.replace(/^\.\/dist\//, '').replace(/\.js$/, ''));

rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], {
  stdio: 'inherit',
});

const require = createRequire(import.meta.url);
for (const entry of entries) {
  const cjsFile = join(dist, `${entry}.js`);
  const cjs = require(cjsFile);
  const names = Object.keys(cjs).filter((name) => name !== '__esModule' && name !== 'default');
  // An entry with a default export (the Fastify plugin) keeps it under import too, as
  // the named export it is: `export { default } from` a CommonJS file would type it,
  // under node16, as the whole module object.
  const defaultName = 'default' in cjs ? names.find((name) => cjs[name] === cjs.default) : undefined;
  if ('default' in cjs && defaultName === undefined) throw new Error(`${entry}: its default export must also be a named one`);
  const base = `./${relative(dirname(cjsFile), cjsFile)}`;
  writeFileSync(
    join(dist, `${entry}.mjs`),
    `import cjs from '${base}';\nexport const { ${names.join(', ')} } = cjs;\n` + (defaultName ? `export default cjs.${defaultName};\n` : ''),
  );
  writeFileSync(
    join(dist, `${entry}.d.mts`),
    `export * from '${base}';\n` + (defaultName ? `export { ${defaultName} as default } from '${base}';\n` : ''),
  );
}
const { build } = await import('esbuild');
for (const [subpath, target] of Object.entries(pkg.exports)) {
  const edgeFile = typeof target === 'object' ? target.workerd?.default : undefined;
  if (edgeFile === undefined) continue;
  await build({
    entryPoints: [join(root, 'src', subpath.replace(/^\.\//, ''), 'index.ts')],
    outfile: join(root, edgeFile),
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    external: [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})],
    tsconfig: join(root, 'tsconfig.build.json'),
    legalComments: 'none',
    logLevel: 'warning',
  });
}
// tsc does not keep the executable bit the bin needs when run from a checkout.
for (const bin of Object.values(pkg.bin ?? {})) chmodSync(join(root, bin), 0o755);
console.log(`built dist/ (${entries.length} entry points, CommonJS with ESM wrappers)`);
