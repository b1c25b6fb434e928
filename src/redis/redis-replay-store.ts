import { randomBytes } from 'node:crypto';
import type { ClaimResult, ReplayStore } from '../replay/replay-store';
import { commandRunner, type RedisClientLike, type RunCommand } from './redis-client';

/** Options of {@link RedisReplayStore}. */
export interface RedisReplayStoreOptions {
  /** Prepended to every key, so several endpoints can share one Redis. Default `'mitpo-webhooks:'`. */
  prefix?: string;
  /**
   * Milliseconds a Redis command may take before the delivery is answered 503
   * `replay_store_unavailable` (MITPO retries it). A client that queues commands
   * while disconnected would otherwise hold the request until it reconnects.
   * Default 2000.
   */
  commandTimeout?: number;
}

// One round trip, atomic in Redis: of two instances claiming the same key at
// once, exactly one sets it. The claim's value carries a token so that a release
// removes only the claim this store made, never one another instance took after
// ours lapsed.
const CLAIM = `
local value = redis.call('GET', KEYS[1])
if not value then
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
 * import Redis from 'ioredis';
 * import { RedisReplayStore } from 'mitpo-webhooks/redis';
 * const replay = new RedisReplayStore(new Redis(process.env.REDIS_URL!), { prefix: 'mitpo:' });
 * const webhooks = new MitpoWebhooks({ secret, replay });
 */
export class RedisReplayStore implements ReplayStore {
  readonly prefix: string;
  private readonly run: RunCommand;
  private readonly commandTimeout: number;
  // Tokens of the claims this store holds; an entry lives only from claim to complete or release.
  private readonly tokens = new Map<string, string>();

  /** @throws TypeError when the client is neither ioredis nor node-redis, or an option is invalid */
  constructor(client: RedisClientLike, options: RedisReplayStoreOptions = {}) {
    this.run = commandRunner(client);
    const { prefix = 'mitpo-webhooks:', commandTimeout = 2000 } = options;
    if (typeof prefix !== 'string') throw new TypeError('mitpo-webhooks/redis: prefix must be a string');
    if (typeof commandTimeout !== 'number' || !(commandTimeout > 0)) {
      throw new TypeError('mitpo-webhooks/redis: commandTimeout must be a positive number of milliseconds');
    }
    this.prefix = prefix;
    this.commandTimeout = commandTimeout;
  }

  async claim(key: string, inFlightTtlMs: number): Promise<ClaimResult> {
    const token = randomBytes(9).toString('base64url');
    const ttl = Math.max(1, Math.ceil(inFlightTtlMs));
    const result = await this.command('EVAL', [CLAIM, 1, this.prefix + key, ttl, token]);
    if (result === 'claimed') this.tokens.set(key, token);
    if (result === 'claimed' || result === 'in_flight' || result === 'done') return result;
    throw new Error(`unexpected answer from Redis to a claim: ${String(result)}`);
  }

  async complete(key: string, retentionMs: number): Promise<void> {
    this.tokens.delete(key);
    await this.command('SET', [this.prefix + key, 'done', 'PX', Math.max(1, Math.ceil(retentionMs))]);
  }

  async release(key: string): Promise<void> {
    const token = this.tokens.get(key);
    this.tokens.delete(key);
    if (token !== undefined) await this.command('EVAL', [RELEASE, 1, this.prefix + key, token]);
  }

  private command(name: string, args: Array<string | number>): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`Redis did not answer ${name} within ${this.commandTimeout} ms`)),
        this.commandTimeout,
      );
      timer.unref();
    });
    return Promise.race([this.run(name, args), timeout]).finally(() => clearTimeout(timer));
  }
}
