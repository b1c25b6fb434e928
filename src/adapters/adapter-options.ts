import { shownValue } from '../option-keys';

// The path every mounting takes, checked the same way everywhere: a relative
// path fails at mount time with a TypeError, not as a route that silently
// never matches; and how a request's URL is matched against it.

/**
 * A route path, checked and returned as given: what a router registers (Fastify,
 * NestJS on Fastify), where a trailing slash or a `//` is part of the route.
 * `undefined` stays so when the path is optional.
 */
export function checkedPath(path: unknown, where: string, required: boolean): string | undefined {
  if (path === undefined && !required) return undefined;
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new TypeError(`mitpo-webhooks: ${where} path must be a string starting with "/" (got ${shownValue(path)})`);
  }
  return path;
}

/** A path to match requests against (middleware, Koa), checked and normalized as request URLs are. */
export function routePath(path: unknown, where: string, required: boolean): string | undefined {
  const checked = checkedPath(path, where, required);
  return checked === undefined ? undefined : normalizePath(checked);
}

/**
 * The scheme and host of a request line's absolute form (`POST http://host/path`).
 * `url.parse` takes any scheme, and for most a host even without `//`
 * (`x:host/path`); whatever it makes the path, it starts at the first `/` after
 * the host or does not start with `/` at all (and then matches no route), so
 * everything up to that `/` goes.
 */
const SCHEME_AND_HOST = /^[a-z0-9.+-]+:(?:\/\/)?[^/?#]*/i;

/**
 * A host without a scheme: `url.parse` takes `//user@host` for one (its
 * `hostPattern`), so `//x@y/webhooks/mitpo#` is routed by Express to
 * `/webhooks/mitpo`; everything up to the next `/` goes, as above. Anywhere in
 * the path, not only at its start: a Router mounted at `/webhooks` is given
 * what is left of the raw URL (`//x@y/mitpo#`), which is read again.
 */
const USER_AND_HOST = /\/\/[^@/]+@[^@/][^/]*/g;

/** Runs of `/`: Express 4 cuts a mount path with one more `/` than it matched, so `/webhooks//mitpo` reaches a route at `/mitpo` there. */
const SLASHES = /\/{2,}/g;

/** What Node's `url.parse` trims from either end of a URL: C0 controls, space, U+00A0 and U+FEFF. */
const URL_PADDING = /^[\0-\x20\u00a0\ufeff]+|[\0-\x20\u00a0\ufeff]+$/g;

/**
 * A URL's path without its scheme and host, query string, fragment or a
 * trailing slash, read at least as loosely as Express and Connect read it:
 * they take the path with `parseurl`, which falls back to Node's `url.parse`
 * for a URL with a `#`, white space, or in the absolute form, and `url.parse`
 * trims the URL, takes `\` for `/` before its query string and `//user@host`
 * for a host; and a Router mounted at a part of the path reads what is left of
 * the raw URL again. So a spelling such as `/webhooks\mitpo#`,
 * `//x@y/webhooks/mitpo#` or `/webhooks//x@y/mitpo#` that Express routes to
 * the path, or to its end in such a Router, is this path here too.
 * (Read this way without the fallback, a `\` only makes the middleware own a
 * spelling Express would route nowhere: refused, never let through.)
 */
export function normalizePath(url: string | undefined): string {
  const beforeQuery = (url ?? '/').replace(URL_PADDING, '').split(/[?#]/, 1)[0]!;
  const pathname = beforeQuery.replaceAll('\\', '/').replace(SCHEME_AND_HOST, '').replace(USER_AND_HOST, '/').replace(SLASHES, '/') || '/';
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
