// Where the Web runtimes are, as scripts/install-edge-runtimes.sh installs them
// from the npm registry into .edge-runtimes/, or as given by MITPO_DENO,
// MITPO_BUN, MITPO_WORKERD_NODE (a Node 22+ for miniflare) and MITPO_MINIFLARE
// (miniflare's package directory). Plain CommonJS: Jest's global setup, which
// announces the missing ones, loads it without a TypeScript transform.
const { existsSync } = require('node:fs');
const path = require('node:path');

const MODULES = path.join(__dirname, '..', '..', '.edge-runtimes', 'node_modules');
const PLATFORM = `${process.platform}-${process.arch}`;
const INSTALL = 'run scripts/install-edge-runtimes.sh (it installs them from the npm registry)';

function firstExisting(...candidates) {
  return candidates.find((candidate) => candidate !== undefined && candidate !== '' && existsSync(candidate));
}

/** Each runtime's paths, or `{ missing }` saying why it cannot run here. */
function findRuntimes() {
  const deno = firstExisting(process.env.MITPO_DENO, path.join(MODULES, '@deno', `${PLATFORM}-glibc`, 'deno'), path.join(MODULES, '@deno', PLATFORM, 'deno'));
  // The bun package moves its platform package's binary into its own bin/ when installed.
  const bun = firstExisting(process.env.MITPO_BUN, path.join(MODULES, 'bun', 'bin', 'bun.exe'), path.join(MODULES, '@oven', `bun-${PLATFORM}`, 'bin', 'bun'));
  const node = firstExisting(process.env.MITPO_WORKERD_NODE, path.join(MODULES, `node-${PLATFORM}`, 'bin', 'node'));
  const miniflare = firstExisting(process.env.MITPO_MINIFLARE, path.join(MODULES, 'miniflare'));
  return {
    deno: deno ? { binary: deno } : { missing: `no deno binary (MITPO_DENO unset, none in .edge-runtimes): ${INSTALL}` },
    bun: bun ? { binary: bun } : { missing: `no bun binary (MITPO_BUN unset, none in .edge-runtimes): ${INSTALL}` },
    workerd:
      node && miniflare
        ? { node, miniflare }
        : { missing: `no miniflare, or no Node 22 to run it (MITPO_WORKERD_NODE, MITPO_MINIFLARE unset): ${INSTALL}` },
  };
}

module.exports = { findRuntimes };
