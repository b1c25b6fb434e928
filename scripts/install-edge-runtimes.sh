#!/usr/bin/env bash
# Installs the Web runtimes the edge tests run in (test/edge/), from the npm
# registry, into .edge-runtimes/ (git-ignored): workerd through miniflare (which
# needs Node 22, taken from the registry's node-<platform> package), Deno and
# Bun. Each ships its binary in a per-platform package, so nothing is downloaded
# by an install script (npm 11 does not run them unless approved). Tests that
# find a runtime missing say SKIPPED. Safe to run again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix="$root/.edge-runtimes"
node_package="node-$(node -p 'process.platform + "-" + process.arch')"
mkdir -p "$prefix"
[ -f "$prefix/package.json" ] || echo '{ "private": true }' >"$prefix/package.json"
npm install --prefix "$prefix" --no-save --no-audit --no-fund --no-package-lock --silent \
  miniflare@4 deno@2 bun@1 "$node_package@22"
echo "installed into $prefix: $(ls "$prefix/node_modules" | tr "\n" " ")"
