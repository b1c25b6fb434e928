/**
 * The installed `@opentelemetry/api` module, or undefined. Node's platform only:
 * it loads the optional peer with `require`, which a Web runtime's module graph
 * must not contain (a bundler would pull the package in or fail on it). Typed
 * `unknown` so no public type names the optional peer; `Telemetry` knows its shape.
 */
export function loadOtelApi(): unknown {
  try {
    // An optional peer dependency: picked up when installed, never required.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on demand, as an optional peer
    return require('@opentelemetry/api') as unknown;
  } catch {
    return undefined;
  }
}
