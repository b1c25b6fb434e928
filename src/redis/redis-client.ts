/** The part of an `ioredis` client this store uses. */
export interface IoRedisLike {
  call(command: string, ...args: Array<string | number>): Promise<unknown>;
}

/** The part of a `redis` (node-redis v4 and later) client this store uses. */
export interface NodeRedisLike {
  sendCommand(args: string[]): Promise<unknown>;
}

/** An `ioredis` client or a `redis` (node-redis) client, connected. */
export type RedisClientLike = IoRedisLike | NodeRedisLike;

/** One command, whichever library the client comes from. */
export type RunCommand = (command: string, args: Array<string | number>) => Promise<unknown>;

/**
 * Both libraries are told apart by shape, not imported, so neither is a
 * dependency. ioredis is checked first: it also has a `sendCommand`, but one
 * that takes its own Command objects.
 */
export function commandRunner(client: unknown): RunCommand {
  const candidate = client as Partial<IoRedisLike & NodeRedisLike> | null;
  if (typeof candidate?.call === 'function') {
    const io = candidate as IoRedisLike;
    return (command, args) => io.call(command, ...args);
  }
  if (typeof candidate?.sendCommand === 'function') {
    const node = candidate as NodeRedisLike;
    return (command, args) => node.sendCommand([command, ...args.map(String)]);
  }
  throw new TypeError(
    'mitpo-webhooks/redis: RedisReplayStore needs an ioredis client (new Redis(url)) or a connected node-redis client (createClient().connect())',
  );
}
