export { RedisReplayStore, type RedisReplayStoreOptions } from './redis-replay-store';
export type { RedisClientLike, IoRedisLike, NodeRedisLike } from './redis-client';
