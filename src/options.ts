import { parseSizeLimit } from './body/size-limit';
import { readSeconds } from './duration-option';
import type { MitpoEvent, UnknownMitpoEvent } from './events/schemas';
import { isDeliveryQueue, type DeliveryQueue } from './queue/delivery-queue';
import { MemoryReplayStore } from './replay/memory-replay-store';
import { isReplayStore, keepsOrder, type ReplayStore } from './replay/replay-store';
import { orderOf, type OrderingOption, type OrderOf } from './ordering/event-order';
import type { Platform } from './platform/platform';
import { signingKeysOf, type SecretOption, type SigningKeys } from './secrets/secret-source';

/** A structured logger in pino's shape (`logger.warn(obj, msg)`); `console` works too. */
export interface WebhookLogger {
  debug(record: object, message: string): void;
  info(record: object, message: string): void;
  warn(record: object, message: string): void;
  error(record: object, message: string): void;
}

/** Computes the replay key of a verified delivery; see {@link MitpoWebhooksOptions.deliveryKey}. `Bytes` as in `DeliveryContext`. */
export type DeliveryKeyFunction<Bytes extends Uint8Array = Uint8Array> = (event: MitpoEvent | UnknownMitpoEvent, rawBody: Bytes) => string;

/** Options of `new MitpoWebhooks()`. Every duration is in seconds (fractions allowed); `Bytes` as in `DeliveryContext`. */
export interface MitpoWebhooksOptions<Bytes extends Uint8Array = Uint8Array> {
  /** The signing secret as issued (`whsec_...`), several during a rotation, or a function returning them (a secrets manager). */
  secret: SecretOption;
  /** Seconds `X-MITPO-Timestamp` may differ from this server's clock, past or future. Default 300. */
  tolerance?: number | undefined;
  /** Seconds the signed body `timestamp` may be old; also how long delivery keys are kept. Default 259 200 (3 days). */
  maxEventAge?: number | undefined;
  /**
   * Where delivery keys are kept; `false` turns de-duplication off. Default a new
   * `MemoryReplayStore`, or none with `queue` (the queue de-duplicates by key).
   */
  replay?: ReplayStore | false | undefined;
  /**
   * A durable queue (`BullMQDeliveryQueue` from `mitpo-webhooks/bullmq`,
   * `PostgresDeliveryQueue` from `mitpo-webhooks/postgres`, or in tests
   * `MemoryDeliveryQueue` from `mitpo-webhooks/testing`): every check runs, the
   * delivery is queued, and the answer is 200 `queued` at once; handlers run in
   * workers (`startWorker()`), with retries and dead letters.
   */
  queue?: DeliveryQueue | undefined;
  /**
   * Applies each resource's events in order and never a stale one: `true` for
   * the default resource (`dispatch:<dispatch_id>`, `connection:<connection_id>`),
   * or `{ key: (event) => string | undefined }`. A stale event is answered 200
   * `stale` and passed to `onStale`; a second event of a resource being handled
   * is 409 `resource_in_flight` inline, and waits in a worker. Needs a replay
   * store or queue that keeps order (all of this package's do). Default off.
   */
  ordering?: OrderingOption | undefined;
  /** Largest body accepted: bytes, or a size like `'512kb'`. Default `'1mb'`. */
  limit?: number | string | undefined;
  /** Seconds for the whole body to arrive once the headers did; past it, 408 `body_timeout`. Default 10. */
  bodyTimeout?: number | undefined;
  /**
   * Seconds a claim outlives a process that died holding it. A claim whose
   * handlers still run is renewed, so this need not cover the slowest handler.
   * Default 300.
   */
  inFlightTtl?: number | undefined;
  /**
   * Seconds to wait for the handlers before answering 503 `handler_timeout`. Off by
   * default: the answer waits for the handlers. When it fires, the delivery stays
   * claimed until the handlers settle, so MITPO's retry never runs them alongside.
   */
  handlerTimeout?: number | undefined;
  /** Seconds a `secret` function's result is reused; 0 calls it for every delivery. Default 60. */
  secretCacheTtl?: number | undefined;
  /**
   * The replay key of a verified delivery, where MITPO's retries are known to
   * differ byte-wise (e.g. `(event) => event.data.dispatch_id + event.event`).
   * Default: the hex SHA-256 of the raw body.
   */
  deliveryKey?: DeliveryKeyFunction<Bytes> | undefined;
  /** Structured records for refused and failed deliveries (pino, or `console`). Default: silent. */
  logger?: WebhookLogger | undefined;
  /** The clock in milliseconds since the epoch, for tests. Default `Date.now`. */
  now?: (() => number) | undefined;
}

/** The options after validation, with every default applied. */
export interface ResolvedOptions {
  secrets: SigningKeys;
  toleranceSeconds: number;
  maxEventAgeSeconds: number;
  replay: ReplayStore | undefined;
  queue: DeliveryQueue | undefined;
  /** With `ordering`: each event's place among its resource's events. */
  orderOf: OrderOf | undefined;
  limit: number;
  bodyTimeoutSeconds: number;
  inFlightTtlMs: number;
  handlerTimeoutMs: number | undefined;
  /** How long a handled delivery's key is kept: the whole window in which the event can still pass the age check. */
  retentionMs: number;
  deliveryKey: DeliveryKeyFunction | undefined;
  logger: WebhookLogger | undefined;
  now: () => number;
}

/** The options `new MitpoWebhooks()` takes, by name; NestJS's module adds its own to these. */
export const KNOWN_OPTIONS = new Set([
  'secret',
  'tolerance',
  'maxEventAge',
  'replay',
  'queue',
  'ordering',
  'limit',
  'bodyTimeout',
  'inFlightTtl',
  'handlerTimeout',
  'secretCacheTtl',
  'deliveryKey',
  'logger',
  'now',
]);

/** Upper bounds a millisecond slip cannot pass (`bodyTimeout: 2000` would otherwise mean 33 minutes). */
const HOUR = 3600;
const DAY = 86_400;

/**
 * Every option is checked here, once, so misconfiguration is a `TypeError` at
 * start-up and never a per-request surprise.
 */
export function resolveOptions(options: unknown, platform: Platform): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('mitpo-webhooks: new MitpoWebhooks(options) needs an options object with at least { secret }');
  }
  const given = options as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!KNOWN_OPTIONS.has(key)) {
      throw new TypeError(`mitpo-webhooks: unknown option "${key}"; known options are ${[...KNOWN_OPTIONS].join(', ')}`);
    }
  }
  const toleranceSeconds = readSeconds(given.tolerance, { name: 'tolerance', fallback: 300, max: HOUR })!;
  const maxEventAgeSeconds = readSeconds(given.maxEventAge, { name: 'maxEventAge', fallback: 3 * DAY, max: 365 * DAY })!;
  const inFlightTtlSeconds = readSeconds(given.inFlightTtl, { name: 'inFlightTtl', fallback: 300, max: DAY })!;
  const handlerTimeoutSeconds = readSeconds(given.handlerTimeout, { name: 'handlerTimeout', fallback: undefined, max: HOUR });
  const secretCacheTtlSeconds = readSeconds(given.secretCacheTtl, { name: 'secretCacheTtl', fallback: 60, max: 3600, allowZero: true })!;
  const now = clock(given.now);
  const replay = given.queue === undefined ? replayStore(given.replay) : noReplayWithQueue(given.replay);
  const queue = deliveryQueue(given.queue);
  return {
    secrets: signingKeysOf(given.secret, (secret) => platform.signingKey(secret), secretCacheTtlSeconds * 1000, now),
    toleranceSeconds,
    maxEventAgeSeconds,
    replay,
    queue,
    orderOf: ordering(given.ordering, replay, queue),
    limit: parseSizeLimit(given.limit ?? '1mb'),
    bodyTimeoutSeconds: readSeconds(given.bodyTimeout, { name: 'bodyTimeout', fallback: 10, max: 120 })!,
    inFlightTtlMs: inFlightTtlSeconds * 1000,
    handlerTimeoutMs: handlerTimeoutSeconds === undefined ? undefined : handlerTimeoutSeconds * 1000,
    // An event may arrive up to `tolerance` early and up to `maxEventAge` late, so
    // its key must outlive that whole window to stop every replay of it.
    retentionMs: (maxEventAgeSeconds + toleranceSeconds) * 1000,
    deliveryKey: optionalFunction<DeliveryKeyFunction>(given.deliveryKey, 'deliveryKey', '(event, rawBody) => string'),
    logger: logger(given.logger),
    now,
  };
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

function ordering(value: unknown, replay: ReplayStore | undefined, queue: DeliveryQueue | undefined): OrderOf | undefined {
  const order = orderOf(value);
  if (order === undefined) return undefined;
  if (queue !== undefined) {
    if (queue.keepsOrder !== true) throw new TypeError('mitpo-webhooks: ordering needs a queue that keeps order (keepsOrder); this package\'s queues do');
  } else if (replay === undefined) {
    throw new TypeError('mitpo-webhooks: ordering needs a replay store to record what was applied; it cannot go with replay: false');
  } else if (!keepsOrder(replay)) {
    throw new TypeError(
      'mitpo-webhooks: ordering needs a replay store that keeps order (claimInOrder, completeInOrder, releaseInOrder, renewInOrder); ' +
        'MemoryReplayStore and RedisReplayStore do, this custom store does not',
    );
  }
  return order;
}

function deliveryQueue(value: unknown): DeliveryQueue | undefined {
  if (value === undefined || isDeliveryQueue(value)) return value;
  throw new TypeError('mitpo-webhooks: queue must be a DeliveryQueue, e.g. new BullMQDeliveryQueue({ connection }) from mitpo-webhooks/bullmq');
}

function noReplayWithQueue(value: unknown): undefined {
  if (value === undefined || value === false) return undefined;
  throw new TypeError(
    'mitpo-webhooks: replay and queue do not go together: the queue de-duplicates deliveries by their key itself; drop replay',
  );
}

function logger(value: unknown): WebhookLogger | undefined {
  if (value === undefined) return undefined;
  const candidate = value as Partial<WebhookLogger> | null;
  const missing = (['debug', 'info', 'warn', 'error'] as const).filter((level) => typeof candidate?.[level] !== 'function');
  if (missing.length > 0) {
    throw new TypeError(`mitpo-webhooks: logger needs debug(), info(), warn() and error() methods (pino and console work); missing ${missing.join(', ')}`);
  }
  return candidate as WebhookLogger;
}

function clock(value: unknown): () => number {
  // Read at each call, not taken once: a test's fake Date (jest.useFakeTimers) replaces Date.now after the receiver was built.
  return optionalFunction<() => number>(value, 'now', '() => milliseconds since the epoch') ?? (() => Date.now());
}

function optionalFunction<F>(value: unknown, name: string, shape: string): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw new TypeError(`mitpo-webhooks: ${name} must be a function ${shape}`);
  return value as F;
}
