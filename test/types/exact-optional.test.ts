import { readdirSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/**
 * An app compiled with `exactOptionalPropertyTypes` may only pass `undefined` to an
 * optional property whose type says so, and apps pass it all the time: an option read
 * from an unset environment variable, a config object with holes. The runtime treats
 * `undefined` as left out everywhere, so every optional property of the package's types
 * says `| undefined` too. (Found by a hunt: `new MitpoWebhooks({ secret, handlerTimeout })`
 * with a `number | undefined`, `close({ timeout: undefined })` and `startWorker({
 * concurrency: undefined })` were type errors there.)
 */
const ROOT = path.join(__dirname, '../..');
const DIST = path.join(ROOT, 'dist');

describe('optional properties of the types in dist/ (built by npm test\'s pretest), under exactOptionalPropertyTypes', () => {
  it('each accept undefined', () => {
    const files = (readdirSync(DIST, { recursive: true }) as string[]).filter((file) => /\.d\.m?ts$/.test(file)).map((file) => path.join(DIST, file));
    expect(files.length).toBeGreaterThan(10);
    const program = ts.createProgram(files, {
      strict: true,
      exactOptionalPropertyTypes: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      skipLibCheck: true,
      types: ['node'],
    });
    const checker = program.getTypeChecker();
    const undefinedType = checker.getUndefinedType();
    const refused: string[] = [];
    for (const file of program.getSourceFiles()) {
      if (!file.fileName.startsWith(DIST)) continue;
      const visit = (node: ts.Node): void => {
        if (ts.isPropertySignature(node) && node.questionToken !== undefined && node.type !== undefined) {
          if (!checker.isTypeAssignableTo(undefinedType, checker.getTypeFromTypeNode(node.type))) {
            const { line } = file.getLineAndCharacterOfPosition(node.getStart());
            refused.push(`${path.relative(ROOT, file.fileName)}:${line + 1} ${node.name.getText()}`);
          }
        }
        ts.forEachChild(node, visit);
      };
      visit(file);
    }
    expect(refused).toEqual([]);
  });
});
