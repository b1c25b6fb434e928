import { randomUUID } from 'node:crypto';
import { readSeconds } from '../duration-option';
import { checkOptionKeys } from '../option-keys';
import { withTimeout } from '../with-timeout';
import type { EventOrder } from '../ordering/event-order';
import type { ClaimResult, OrderedClaimResult, ReplayStore } from '../replay/replay-store';
import { commandRunner, type RedisClientLike, type RunCommand } from './redis-client';
import { resourceKeys, staleAnswer } from './resource-keys';

/** Options of {@link RedisReplayStore}. */
export interface RedisReplayStoreOptions {
  /** Prepended to every key, so several endpoints can share one Redis. Default `'mitpo-webhooks:'`. */
  prefix?: string | undefined;
  /**
   * Seconds a Redis command may take before the delivery is answered 503
   * `replay_store_unavailable` (MITPO retries it). A client that queues commands
   * while disconnected would otherwise hold the request until it reconnects.
   * Default 2.
   */
  commandTimeout?: number | undefined;
}

// One round trip, atomic in Redis: of two instances claiming the same key at
// once, exactly one sets it. The claim's value carries the attempt's token, so
// that renewing or releasing touches only that attempt's claim, never one
// another attempt took after it lapsed. A claim already holding this attempt's
// token is its own claim sent again (ioredis resends a command whose reply a
// dropped connection lost): answered 'claimed' again, not 'in_flight', which
// would leave it held with no one to run it.
const CLAIM = `
local value = redis.call('GET', KEYS[1])
if not value or value == 'in_flight:' .. ARGV[2] then
  redis.call('SET', KEYS[1], 'in_flight:' .. ARGV[2], 'PX', ARGV[1])
  return 'claimed'
end
if value == 'done' then return 'done' end
return 'in_flight'
`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == 'in_flight:' .. ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;

// A claim that lapsed (its process's event loop was held up past the TTL, or
// Redis was out of reach) and that no other attempt took since is taken back,
// as MemoryReplayStore does: a live claim is renewed for as long as its handlers
// run, not only until its first lapse. One another attempt holds, or that was
// marked done, is lost (0), which the receiver logs. (One another attempt took
// and released since looks the same as one no one took: it is taken back, and
// that overlap goes unlogged.) A renewal is sent before
// its own claim's release or completion, on the same connection, so it never
// brings back a claim its attempt gave up.
const RENEW = `
local value = redis.call('GET', KEYS[1])
if value and value ~= 'in_flight:' .. ARGV[2] then return 0 end
redis.call('SET', KEYS[1], 'in_flight:' .. ARGV[2], 'PX', ARGV[1])
return 1
`;

// With ordering, the delivery key, the resource's applied position and the
// resource's holder are read and set in one script: of two instances taking
// two events of one resource at once, exactly one holds it, and no event older
// than the applied one is ever claimed. KEYS: delivery, applied, holder. As in
// CLAIM, this attempt's own claim sent again goes on as if the key were free:
// its turn, taken with it, is this token's too.
const CLAIM_IN_ORDER = `
local value = redis.call('GET', KEYS[1])
if value == 'done' then return 'done' end
if value and value ~= 'in_flight:' .. ARGV[2] then return 'in_flight' end
local applied = redis.call('GET', KEYS[2])
if applied and tonumber(applied) > tonumber(ARGV[3]) then return 'stale:' .. applied end
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[2] then return 'resource_in_flight' end
redis.call('SET', KEYS[1], 'in_flight:' .. ARGV[2], 'PX', ARGV[1])
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[1])
return 'claimed'
`;

// The completion and the applied position in one script, so no crash between
// them can leave a handled event without its place recorded.
const COMPLETE_IN_ORDER = `
redis.call('SET', KEYS[1], 'done', 'PX', ARGV[1])
local applied = redis.call('GET', KEYS[2])
if not applied or tonumber(applied) < tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
end
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
return 1
`;

const RELEASE_IN_ORDER = `
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if redis.call('GET', KEYS[1]) == 'in_flight:' .. ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;

// As RENEW, for the claim and the resource's turn: each taken back when it
// lapsed and no one took it since. A turn another event of the resource took
// is lost (0), while the claim is still kept, so no retry of this delivery
// runs beside it. So is one a newer event took and gave up once applied: its
// holder is gone as if no one had taken it, but the applied position tells.
// KEYS: delivery, holder, applied.
const RENEW_IN_ORDER = `
local value = redis.call('GET', KEYS[1])
if value and value ~= 'in_flight:' .. ARGV[2] then return 0 end
redis.call('SET', KEYS[1], 'in_flight:' .. ARGV[2], 'PX', ARGV[1])
local applied = redis.call('GET', KEYS[3])
if applied and tonumber(applied) > tonumber(ARGV[3]) then return 0 end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[1])
return 1
`;

/** How often, and how far apart at first, a timed-out claim's undo is tried. */
const UNDO_ATTEMPTS = 5;
const UNDO_FIRST_DELAY_MS = 1000;

/**
 * A replay store in Redis, for several receiver instances behind one load
 * balancer: a delivery is handled once across all of them.
 *
 * Pass an `ioredis` client or a connected `redis` (node-redis) client. For fast
 * failure while Redis is down, let the client fail commands instead of queueing
 * them (ioredis: `maxRetriesPerRequest: 1`; node-redis: `disableOfflineQueue: true`);
 * `commandTimeout` bounds the wait either way.
 *
 * @example
 * import { Redis } from 'ioredis';
 * import { RedisReplayStore } from 'mitpo-webhooks/redis';
 * const replay = new RedisReplayStore(new Redis(process.env.REDIS_URL!), { prefix: 'mitpo:' });
 * const webhooks = new MitpoWebhooks({ secret, replay });
 */
export class RedisReplayStore implements ReplayStore {
  readonly prefix: string;
  private readonly run: RunCommand;
  private readonly commandTimeoutMs: number;
  /**
   * Tokens of claims made without one (a caller outside the pipeline, which
   * always passes its own), so that this instance's release finds its claim and
   * never another instance's. An entry lives from claim to complete or release.
   */
  private readonly ownTokens = new Map<string, string>();

  /** @throws TypeError when the client is neither ioredis nor node-redis, or an option is invalid */
  constructor(client: RedisClientLike, options: RedisReplayStoreOptions = {}) {
    this.run = commandRunner(client);
    checkOptionKeys(options, 'RedisReplayStore', ['prefix', 'commandTimeout']);
    const { prefix = 'mitpo-webhooks:' } = options;
    if (typeof prefix !== 'string') throw new TypeError('mitpo-webhooks/redis: prefix must be a string');
    this.prefix = prefix;
    this.commandTimeoutMs =
      readSeconds(options.commandTimeout, { name: 'mitpo-webhooks/redis: commandTimeout', fallback: 2, max: 600 })! * 1000;
  }

  async claim(key: string, inFlightTtlMs: number, givenToken?: string): Promise<ClaimResult> {
    const token = givenToken ?? randomUUID();
    const args = [CLAIM, 1, this.prefix + key, wholeMs(inFlightTtlMs), token];
    let result: unknown;
    try {
      result = await this.command('EVAL', args);
    } catch (error) {
      // A claim that timed out may still run later (the client queued it). The
      // release goes down the same connection after it, so whatever the claim
      // did is undone, and no claim is left that nobody will ever complete.
      this.undoClaim(key, token, UNDO_ATTEMPTS, UNDO_FIRST_DELAY_MS);
      throw error;
    }
    if (result === 'claimed' && givenToken === undefined) this.ownTokens.set(key, token);
    if (result === 'claimed' || result === 'in_flight' || result === 'done') return result;
    throw new Error(`unexpected answer from Redis to a claim: ${String(result)}`);
  }

  async complete(key: string, retentionMs: number): Promise<void> {
    this.ownTokens.delete(key);
    await this.command('SET', [this.prefix + key, 'done', 'PX', wholeMs(retentionMs)]);
  }

  async release(key: string, token?: string): Promise<void> {
    const owner = token ?? this.ownTokens.get(key);
    this.ownTokens.delete(key);
    // No token and no claim of ours: whatever holds the key is another attempt's.
    if (owner !== undefined) await this.command('EVAL', [RELEASE, 1, this.prefix + key, owner]);
  }

  async renew(key: string, inFlightTtlMs: number, token: string): Promise<boolean> {
    const renewed = await this.command('EVAL', [RENEW, 1, this.prefix + key, wholeMs(inFlightTtlMs), token]);
    return Number(renewed) === 1;
  }

  async claimInOrder(key: string, order: EventOrder, inFlightTtlMs: number, token: string): Promise<OrderedClaimResult> {
    const { applied, holder } = resourceKeys(this.prefix, order.resource);
    let result: unknown;
    try {
      result = await this.command('EVAL', [CLAIM_IN_ORDER, 3, this.prefix + key, applied, holder, wholeMs(inFlightTtlMs), token, order.position]);
    } catch (error) {
      this.undoClaim(key, token, UNDO_ATTEMPTS, UNDO_FIRST_DELAY_MS, order);
      throw error;
    }
    if (result === 'claimed' || result === 'in_flight' || result === 'done' || result === 'resource_in_flight') return result;
    const stale = staleAnswer(result);
    if (stale !== undefined) return stale;
    throw new Error(`unexpected answer from Redis to a claim: ${String(result)}`);
  }

  async completeInOrder(key: string, order: EventOrder, retentionMs: number, orderRetentionMs: number, token: string): Promise<void> {
    const { applied, holder } = resourceKeys(this.prefix, order.resource);
    await this.command('EVAL', [COMPLETE_IN_ORDER, 3, this.prefix + key, applied, holder, wholeMs(retentionMs), token, order.position, wholeMs(orderRetentionMs)]);
  }

  async releaseInOrder(key: string, order: EventOrder, token: string): Promise<void> {
    await this.command('EVAL', [RELEASE_IN_ORDER, 2, this.prefix + key, resourceKeys(this.prefix, order.resource).holder, token]);
  }

  async renewInOrder(key: string, order: EventOrder, inFlightTtlMs: number, token: string): Promise<boolean> {
    const { applied, holder } = resourceKeys(this.prefix, order.resource);
    const renewed = await this.command('EVAL', [RENEW_IN_ORDER, 3, this.prefix + key, holder, applied, wholeMs(inFlightTtlMs), token, order.position]);
    return Number(renewed) === 1;
  }

  private undoClaim(key: string, token: string, attemptsLeft: number, delayMs: number, order?: EventOrder): void {
    (order === undefined ? this.release(key, token) : this.releaseInOrder(key, order, token)).catch(() => {
      if (attemptsLeft <= 1) return;
      setTimeout(() => this.undoClaim(key, token, attemptsLeft - 1, delayMs * 2, order), delayMs).unref();
    });
  }

  private command(name: string, args: Array<string | number>): Promise<unknown> {
    return withTimeout(
      this.run(name, args),
      this.commandTimeoutMs,
      () => new Error(`Redis did not answer ${name} within ${this.commandTimeoutMs / 1000} s`),
    );
  }

}

function wholeMs(ms: number): number {
  return Math.max(1, Math.ceil(ms));
}
