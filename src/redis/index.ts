/// <reference types="node" preserve="true" />
// Its types use Node's: see src/index.ts.
export { RedisReplayStore, type RedisReplayStoreOptions } from './redis-replay-store';
export type { RedisClientLike, IoRedisLike, NodeRedisLike } from './redis-client';
