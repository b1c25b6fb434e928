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

/**
 * Whether Express's router sends a POST to `url` to a route at PATH: written
 * out, or as its last segment in a Router mounted at its first (Express cuts
 * the mount path off the raw URL, and reads what is left again).
 */
function routedThere(create: Create, url: string, layout: 'route' | 'mounted' = 'route'): Promise<boolean> {
  return new Promise((resolve) => {
    const router = create.Router();
    if (layout === 'route') router.post(PATH, () => resolve(true));
    else router.use('/webhooks', create.Router().post('/mitpo', () => resolve(true)));
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
    fc.constantFrom('/', '\\', '//', '\\/', '//u@h/', '\\\\u@h/', '//a@b@c/', '//u@h:1/', '/ /'),
    word('mitpo'),
    fc.array(piece, { maxLength: 4 }),
  )
  .map(([prefix, before, first, separator, second, after]) => `${prefix}${before.join('') || '/'}${first}${separator}${second}${after.join('')}`);

describe.each<[string, Create, 'route' | 'mounted']>([
  ['Express 5', express5, 'route'],
  ['Express 4', express4, 'route'],
  ['Express 5, its route in a Router at /webhooks', express5, 'mounted'],
  ['Express 4, its route in a Router at /webhooks', express4, 'mounted'],
])('the path middleware({ path }) owns, against the router of %s', (_name, create, layout) => {
  it('owns every spelling the router takes to a route at that path', async () => {
    let routed = 0;
    await fc.assert(
      fc.asyncProperty(spelling, async (url) => {
        if (!(await routedThere(create, url, layout))) return;
        routed += 1;
        expect(isServedPath(url, PATH)).toBe(true);
      }),
      { seed: 20_261_206, numRuns: 6000 },
    );
    // The generator reaches the route often enough for the property to mean something.
    expect(routed).toBeGreaterThan(50);
  });

  it.each(['/webhooks\\mitpo#', '/webhooks/mitpo\\#', 'http://h/webhooks\\mitpo', '/webhooks/mitpo\u00a0', 'http:/webhooks/mitpo', 'x:h/webhooks/mitpo', '0.+-:./webhooks/mitpo', ' /Webhooks/MITPO#', '//x@y/webhooks/mitpo#', '\\\\x@y\\webhooks/mitpo#', '//a@b@c/Webhooks/Mitpo/#', '/webhooks//x@y/mitpo#', '/webhooks\\\\x@y/mitpo#'])(
    'owns %j, which Express routes there',
    async (url) => {
      const routers = [express5, express4].flatMap((router) => [routedThere(router, url), routedThere(router, url, 'mounted')]);
      expect((await Promise.all(routers)).includes(true)).toBe(true);
      expect(isServedPath(url, PATH)).toBe(true);
    },
  );
});
