/**
 * What the core needs from the runtime it runs on. The core (the order of
 * checks, events, router, answers) imports no `node:` module: Node's entry
 * points hand it `nodePlatform` (`node:crypto` as it is), and a WebCrypto entry
 * can hand it its own without copying the core. A method may answer with a
 * promise where its runtime only has an asynchronous form.
 */
export interface Platform<Key = unknown> {
  /** One signing secret as a key, made once per secret. */
  signingKey(secret: string): Key;
  /**
   * Whether `signatureHex` (64 lowercase hex digits) is the HMAC-SHA256 of
   * `payload` under any of `keys`, compared in constant time.
   */
  signatureMatches(keys: readonly Key[], payload: Uint8Array, signatureHex: string): boolean | Promise<boolean>;
  /** The hex SHA-256 of `bytes`: the default delivery key. */
  sha256Hex(bytes: Uint8Array): string | Promise<string>;
  /** `bytes` as text when they are valid UTF-8; undefined otherwise, so a body is never silently re-decoded. */
  utf8(bytes: Uint8Array): string | undefined;
  /**
   * Runs `start` outside any request's async context, for a timer that serves
   * every delivery (claim renewal): it must not keep, or run in, the context of
   * the request that happened to start it. Where the runtime has no such context, `start()`.
   */
  detached<T>(start: () => T): T;
  /**
   * The body bytes as this runtime's handlers receive them (`ctx.rawBody`):
   * Node's `Buffer` on Node, a plain `Uint8Array` where there is no `Buffer`.
   * Never copies.
   */
  bytes(view: Uint8Array): Uint8Array;
  /** The `@opentelemetry/api` module where the runtime can load it; undefined records nothing. */
  openTelemetry(): unknown;
}
