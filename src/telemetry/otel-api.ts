/** `@opentelemetry/api` as a module: what `Telemetry` records through. */
export type OtelApi = typeof import('@opentelemetry/api');

/**
 * The installed `@opentelemetry/api`, or undefined. Node's platform only: it
 * loads the optional peer with `require`, which a Web runtime's module graph
 * must not contain (a bundler would pull the package in or fail on it).
 */
export function loadOtelApi(): OtelApi | undefined {
  try {
    // An optional peer dependency: picked up when installed, never required.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on demand, as an optional peer
    return require('@opentelemetry/api') as OtelApi;
  } catch {
    return undefined;
  }
}
