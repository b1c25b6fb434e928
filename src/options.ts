import { parseSizeLimit } from './body/size-limit';
import { MemoryReplayStore } from './replay/memory-replay-store';
import { isReplayStore, type ReplayStore } from './replay/replay-store';
import { createSecretSource, type SecretOption, type SecretSource } from './secrets/secret-source';

/** Where the library reports rejected deliveries in words. Default: silent. */
export interface WebhookLogger {
  warn(message: string): void;
  error(message: string): void;
}

/** Options of `new MitpoWebhooks()`. */
export interface MitpoWebhooksOptions {
  /** The signing secret as issued (`whsec_...`), several during a rotation, or a function returning them per delivery. */
  secret: SecretOption;
  /** Seconds `X-MITPO-Timestamp` may differ from this server's clock, past or future. Default 300. */
  tolerance?: number;
  /** Seconds the signed body `timestamp` may be old; also how long delivery keys are kept. Default 259 200 (3 days). */
  maxEventAge?: number;
  /** Where delivery keys are kept; `false` turns de-duplication off. Default a new `MemoryReplayStore`. */
  replay?: ReplayStore | false;
  /** Largest body accepted: bytes, or a size like `'512kb'`. Default `'1mb'`. */
  limit?: number | string;
  /** Seconds a claim lasts when its process dies mid-delivery; keep it above your slowest handler. Default 300. */
  inFlightTtl?: number;
  /**
   * Milliseconds a client may take to send the body once its headers arrived;
   * past it the delivery is answered 408 `body_timeout` and the connection closed,
   * so a client trickling bytes cannot hold a request open. Default 10 000.
   */
  bodyTimeout?: number;
  /**
   * Seconds to wait for the handlers before answering 503 `handler_timeout`. Off by
   * default: the answer waits for the handlers. When it fires, the delivery stays
   * claimed until the handlers do settle (then completed, or released if they
   * failed), so MITPO's retry never runs a handler that is still running.
   * Must be below `inFlightTtl`.
   */
  handlerTimeout?: number;
  /** Receives a line for every refused delivery: 4xx as `warn`, 5xx as `error`. Default: silent. */
  logger?: WebhookLogger;
  /** The clock in milliseconds since the epoch, for tests. Default `Date.now`. */
  now?: () => number;
}

export interface ResolvedOptions {
  secrets: SecretSource;
  toleranceSeconds: number;
  maxEventAgeSeconds: number;
  replay: ReplayStore | undefined;
  limit: number;
  inFlightTtlMs: number;
  retentionMs: number;
  bodyTimeoutMs: number;
  handlerTimeoutMs: number | undefined;
  logger: WebhookLogger | undefined;
  now: () => number;
}

const KNOWN_OPTIONS = new Set([
  'secret',
  'tolerance',
  'maxEventAge',
  'replay',
  'limit',
  'inFlightTtl',
  'bodyTimeout',
  'handlerTimeout',
  'logger',
  'now',
]);

/**
 * Every option is checked here, once, so misconfiguration is a `TypeError` at
 * start-up and never a per-request surprise.
 */
export function resolveOptions(options: unknown): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('mitpo-webhooks: new MitpoWebhooks(options) needs an options object with at least { secret }');
  }
  const given = options as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!KNOWN_OPTIONS.has(key)) {
      throw new TypeError(`mitpo-webhooks: unknown option "${key}"; known options are ${[...KNOWN_OPTIONS].join(', ')}`);
    }
  }
  const toleranceSeconds = positiveSeconds(given.tolerance, 'tolerance', 300);
  const maxEventAgeSeconds = positiveSeconds(given.maxEventAge, 'maxEventAge', 259_200);
  const inFlightTtlSeconds = positiveSeconds(given.inFlightTtl, 'inFlightTtl', 300);
  const handlerTimeoutSeconds = given.handlerTimeout === undefined ? undefined : positiveSeconds(given.handlerTimeout, 'handlerTimeout', 0);
  if (handlerTimeoutSeconds !== undefined && handlerTimeoutSeconds >= inFlightTtlSeconds) {
    throw new TypeError(
      `mitpo-webhooks: handlerTimeout (${handlerTimeoutSeconds} s) must be below inFlightTtl (${inFlightTtlSeconds} s), ` +
        'or a claim could lapse while its handler still runs',
    );
  }
  return {
    secrets: createSecretSource(given.secret),
    toleranceSeconds,
    maxEventAgeSeconds,
    replay: replayStore(given.replay),
    limit: parseSizeLimit(given.limit ?? '1mb'),
    inFlightTtlMs: inFlightTtlSeconds * 1000,
    bodyTimeoutMs: positiveNumber(given.bodyTimeout, 'bodyTimeout', 10_000, 'milliseconds'),
    handlerTimeoutMs: handlerTimeoutSeconds === undefined ? undefined : handlerTimeoutSeconds * 1000,
    // An event may arrive up to `tolerance` early and up to `maxEventAge` late, so
    // its key must outlive that whole window to stop every replay of it.
    retentionMs: (maxEventAgeSeconds + toleranceSeconds) * 1000,
    logger: logger(given.logger),
    now: clock(given.now),
  };
}

function positiveSeconds(value: unknown, name: string, fallback: number): number {
  return positiveNumber(value, name, fallback, 'seconds');
}

function positiveNumber(value: unknown, name: string, fallback: number, unit: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new TypeError(`mitpo-webhooks: ${name} must be a positive number of ${unit} (got ${String(value)})`);
  }
  return value;
}

function replayStore(value: unknown): ReplayStore | undefined {
  if (value === undefined) return new MemoryReplayStore();
  if (value === false) return undefined;
  if (isReplayStore(value)) return value;
  throw new TypeError(
    'mitpo-webhooks: replay must be a ReplayStore (an object with claim, complete and release), ' +
      'or false to turn de-duplication off',
  );
}

function logger(value: unknown): WebhookLogger | undefined {
  if (value === undefined) return undefined;
  const candidate = value as Partial<WebhookLogger> | null;
  if (typeof candidate?.warn !== 'function' || typeof candidate.error !== 'function') {
    throw new TypeError('mitpo-webhooks: logger must have warn() and error() methods (console works)');
  }
  return candidate as WebhookLogger;
}

function clock(value: unknown): () => number {
  if (value === undefined) return Date.now;
  if (typeof value !== 'function') throw new TypeError('mitpo-webhooks: now must be a function returning milliseconds');
  return value as () => number;
}
