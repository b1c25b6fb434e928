import fc from 'fast-check';
import express5 from 'express';
import express4 from 'express4';
import { isServedPath } from '../../src/adapters/adapter-options';

// middleware({ path }) must own every spelling that Express's own router takes to
// a route at that path: one it did not own would reach the app's route unverified.
// Checked against the routers of Express 5 and 4 themselves, which read the path
// with parseurl (and so, for some URLs, with Node's url.parse).
const PATH = '/webhooks/mitpo';

type Create = typeof express5 | typeof express4;

/** Whether Express's router sends a POST to `url` to a route at PATH. */
function routedThere(create: Create, url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const router = create.Router();
    router.post(PATH, () => resolve(true));
    const done = () => resolve(false);
    (router as unknown as (req: object, res: object, next: () => void) => void)({ url, method: 'POST', headers: {} }, {}, done);
  });
}

const piece = fc.constantFrom('/', '\\', '//', '?', '#', ' ', '\t', '\u00a0', '\ufeff', '\u0000', '.', '..', ';', '%2F', '%5C', 'x');
const word = (name: string) => fc.constantFrom(name, name.toUpperCase(), name[0]!.toUpperCase() + name.slice(1));
const spelling = fc
  .tuple(
    fc.constantFrom('', 'http://h', 'HTTP://Host:8080', 'http:', 'http:/', 'https:\\\\h', '//h', ' ', '\u00a0', 'x:', '0.+-:', 'http://u@h', 'http://h h', 'http://h:x', 'javascript:', 'javascript://h', 'x:h', 'x:a b@h', 'http:h', 'http://a b@h', 'file:', 'ws://h', '//u@h', '\\\\u@h', '//a@b@c', '//u@h:1', '//u@h h'),
    fc.array(piece, { maxLength: 2 }),
    word('webhooks'),
    fc.constantFrom('/', '\\', '//', '\\/'),
    word('mitpo'),
    fc.array(piece, { maxLength: 4 }),
  )
  .map(([prefix, before, first, separator, second, after]) => `${prefix}${before.join('') || '/'}${first}${separator}${second}${after.join('')}`);

describe.each<[string, Create]>([
  ['Express 5', express5],
  ['Express 4', express4],
])('the path middleware({ path }) owns, against the router of %s', (_name, create) => {
  it('owns every spelling the router takes to a route at that path', async () => {
    let routed = 0;
    await fc.assert(
      fc.asyncProperty(spelling, async (url) => {
        if (!(await routedThere(create, url))) return;
        routed += 1;
        expect(isServedPath(url, PATH)).toBe(true);
      }),
      { seed: 20_261_206, numRuns: 3000 },
    );
    // The generator reaches the route often enough for the property to mean something.
    expect(routed).toBeGreaterThan(150);
  });

  it.each(['/webhooks\\mitpo#', '/webhooks/mitpo\\#', 'http://h/webhooks\\mitpo', '/webhooks/mitpo\u00a0', 'http:/webhooks/mitpo', 'x:h/webhooks/mitpo', '0.+-:./webhooks/mitpo', ' /Webhooks/MITPO#', '//x@y/webhooks/mitpo#', '\\\\x@y\\webhooks/mitpo#', '//a@b@c/Webhooks/Mitpo/#'])(
    'owns %j, which the router takes there',
    async (url) => {
      expect(await routedThere(create, url)).toBe(true);
      expect(isServedPath(url, PATH)).toBe(true);
    },
  );
});
