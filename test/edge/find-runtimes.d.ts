type Missing = { missing: string };

export function findRuntimes(): {
  deno: { binary: string } | Missing;
  bun: { binary: string } | Missing;
  workerd: { node: string; miniflare: string } | Missing;
};
