/**
 * Every way a delivery can be refused, with the HTTP status it is answered with.
 * One table, so a code can never drift from its status between the middleware,
 * the Fetch handler and `receive()`.
 */
const STATUS_BY_CODE = {
  shutting_down: 503,
  method_not_allowed: 405,
  unsupported_media_type: 415,
  missing_signature: 400,
  malformed_signature: 400,
  missing_timestamp: 400,
  malformed_timestamp: 400,
  timestamp_out_of_tolerance: 401,
  payload_too_large: 413,
  body_read_failed: 400,
  body_timeout: 408,
  body_already_parsed: 500,
  secret_unavailable: 503,
  invalid_signature: 401,
  invalid_json: 400,
  invalid_payload: 400,
  event_mismatch: 400,
  event_too_old: 401,
  event_in_future: 401,
  in_flight: 409,
  resource_in_flight: 409,
  replay_store_unavailable: 503,
  queue_unavailable: 503,
  handler_failed: 500,
  handler_timeout: 503,
  internal_error: 500,
} as const;

/** A stable, machine-readable reason for refusing a delivery. */
export type WebhookErrorCode = keyof typeof STATUS_BY_CODE;

/** The status a refusal with this code is answered with. */
export function statusForCode(code: WebhookErrorCode): number {
  return STATUS_BY_CODE[code];
}

/**
 * Why a delivery was not accepted.
 *
 * `code` is stable and safe to branch on; `message` is for people and never
 * contains a secret or an expected signature. `status` and `statusCode` are the
 * HTTP status the delivery is answered with (`statusCode` is what Express's
 * default error handler reads).
 *
 * @example
 * try { await webhooks.verify({ rawBody, headers }); }
 * catch (err) { if (err instanceof WebhookVerificationError) res.status(err.status).end(); }
 */
export class WebhookVerificationError extends Error {
  override readonly name = 'WebhookVerificationError';
  /** Which check refused the delivery, a stable code (docs/checks-and-codes.md). */
  readonly code: WebhookErrorCode;
  /** The HTTP status the receiver answers with for this code. */
  readonly status: number;
  /** The same as `status`, under the name Express's and Koa's error handlers read. */
  readonly statusCode: number;
  /** Koa (and other handlers that follow http-errors) show `message` to the client only when this is true; our messages are safe to show. */
  readonly expose: boolean;
  /** Headers the answer must carry (`Allow: POST` on a 405); Express's final handler sets them too. */
  readonly headers?: Readonly<Record<string, string>>;

  constructor(code: WebhookErrorCode, message: string, options?: { cause?: unknown; headers?: Record<string, string> | undefined }) {
    // Speed only, and it buys it: capturing frames (async ones included) costs
    // about 7 µs a refusal here, and forged 300 B deliveries cost 49.5 µs with
    // no capture against 83.6 µs with it in `npm run bench` (bench/README.md).
    // Nothing that can throw runs while the limit is 0, and a limit that cannot
    // be changed (frozen intrinsics) is left alone.
    const text = String(message);
    const stackTraceLimit = Error.stackTraceLimit;
    setStackTraceLimit(0);
    super(text, options?.cause === undefined ? undefined : { cause: options.cause });
    setStackTraceLimit(stackTraceLimit);
    // A refusal's stack is its first line only. Express's default error handler
    // prints `err.stack` outside production, and a forged request must not learn
    // install paths from it. What went wrong in the app's own code stays in
    // `cause`, stack and all.
    this.stack = `WebhookVerificationError: ${text}`;
    this.code = code;
    this.status = STATUS_BY_CODE[code];
    this.statusCode = this.status;
    this.expose = this.status < 500;
    if (options?.headers !== undefined) this.headers = Object.freeze({ ...options.headers });
  }
}

function setStackTraceLimit(limit: number): void {
  try {
    Error.stackTraceLimit = limit;
  } catch {
    // Read-only where intrinsics are frozen: frames are then captured, and the stack still replaced.
  }
}

/** Lets callers treat anything thrown by a handler as an `Error` without losing the original value. */
export function toError(value: unknown): Error {
  try {
    return describeAsError(value);
  } catch {
    // A value that throws when looked at (a revoked Proxy) still becomes an Error.
    return new Error('Non-Error value thrown, which could not be described');
  }
}

function describeAsError(value: unknown): Error {
  if (value instanceof Error) return value;
  let text: string;
  try {
    text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  } catch {
    text = Object.prototype.toString.call(value);
  }
  return new Error(`Non-Error value thrown: ${text}`, { cause: value });
}

/**
 * Blanks the arguments of a Redis `AUTH` or `HELLO` in an error and its causes, in place:
 * ioredis attaches the command that failed to its error, password included, and such an
 * error (a store or a queue that could not log in) would reach a log or `onFailure` whole.
 * @returns the same error
 */
export function withoutCredentials<T>(error: T): T {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && typeof current === 'object' && current !== null; depth += 1) {
    const command = (current as { command?: { name?: unknown; args?: unknown } }).command;
    if (typeof command?.name === 'string' && /^(auth|hello)$/i.test(command.name) && Array.isArray(command.args)) {
      try {
        command.args = command.args.map(() => '[redacted]');
      } catch {
        // A frozen command object: nothing here can change it.
      }
    }
    current = (current as { cause?: unknown }).cause;
  }
  return error;
}

/**
 * Postgres' SQLSTATE, when the error carries one: an answer from the server, not a
 * failure of the connection. A SQLSTATE has a digit (42501, XX000, P0001);
 * Node's five-letter errno codes (EPIPE) have none.
 */
export function sqlStateOf(error: unknown): string | undefined {
  const code = codeOf(error);
  return code !== undefined && /^(?=.*\d)[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * A method of the receiver called with no receiver: taken off it (`app.post(path,
 * webhooks.middleware)`, `export const POST = webhooks.fetchHandler`, `const { receive } = webhooks`).
 */
export function calledWithoutReceiver(method: string, fix: string): TypeError {
  return new TypeError(`mitpo-webhooks: webhooks.${method} was called without its receiver: ${fix}`);
}

/** The string code an error carries (ours, a queue's, Postgres' SQLSTATE), when it carries one. */
export function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
