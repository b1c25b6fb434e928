/**
 * The options every mounting takes (a path, and a few of its own), checked the
 * same way everywhere: a typo or a relative path fails at mount time with a
 * TypeError, not as a route that silently never matches.
 */

/** Throws on anything but an object, and on a key outside `known`. Returns the object. */
export function checkOptionKeys(options: unknown, where: string, known: readonly string[], shown = known): Record<string, unknown> {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`mitpo-webhooks: ${where} takes an options object, e.g. { path: "/webhooks/mitpo" }`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TypeError(`mitpo-webhooks: unknown ${where} option "${key}"; known options are ${shown.join(', ')}`);
    }
  }
  return options as Record<string, unknown>;
}

/** A route path as given, checked and normalized; `undefined` stays so when the path is optional. */
export function routePath(path: unknown, where: string, required: boolean): string | undefined {
  if (path === undefined && !required) return undefined;
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new TypeError(`mitpo-webhooks: ${where} path must be a string starting with "/" (got ${JSON.stringify(path)})`);
  }
  return normalizePath(path);
}

/** The scheme and host of a request line's absolute form (`POST http://host/path`). */
const SCHEME_AND_HOST = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i;

/**
 * A URL's path without its scheme and host, query string, fragment or a
 * trailing slash. Each is something Node passes on as sent and Express routes
 * without (a full URL in the request line; a raw `#`), so none may make the
 * path another one here.
 */
export function normalizePath(url: string | undefined): string {
  const pathname = (url ?? '/').replace(SCHEME_AND_HOST, '').split(/[?#]/, 1)[0]! || '/';
  return pathname.length > 1 && pathname.endsWith('/') ? pathname.slice(0, -1) : pathname;
}

/**
 * Whether a request's URL is the served path, matched as Express and NestJS
 * route by default: without regard to case, with or without one trailing
 * slash. A stricter match would let `/Webhooks/MITPO/` skip verification and
 * reach whatever route the app matches it to.
 */
export function isServedPath(url: string | undefined, servedPath: string): boolean {
  return normalizePath(url).toLowerCase() === servedPath.toLowerCase();
}
