import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import Redis from 'ioredis';
import { createClient } from 'redis';
import type { RedisClientLike } from '../../src/redis';

/** Set by .ci/run; without it the Redis tests are skipped, and say so. */
export const REDIS_URL = process.env.REDIS_URL;

export function describeWithRedis(title: string): jest.Describe {
  if (REDIS_URL === undefined || REDIS_URL === '') {
    console.log(`SKIPPED ${title}: set REDIS_URL (e.g. redis://127.0.0.1:6379) to run it against a real Redis; .ci/run does.`);
    return describe.skip;
  }
  return describe;
}

export interface TestClient {
  client: RedisClientLike;
  /** For assertions made straight against Redis. */
  raw(command: string, ...args: string[]): Promise<unknown>;
  close(): Promise<void>;
}

/**
 * Both client libraries, configured as the README recommends: commands fail at
 * once while Redis is down instead of queueing. Connecting fails the test when
 * Redis cannot be reached.
 */
export const CLIENT_FACTORIES: Record<'ioredis' | 'node-redis', (url: string) => Promise<TestClient>> = {
  ioredis: async (url) => {
    let connected = false;
    const client = new Redis(url, {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      // Reconnect after an outage, but let a first connection that fails fail the test.
      retryStrategy: () => (connected ? 50 : null),
    });
    client.on('error', () => {});
    await connectOrGiveUp(client.connect(), () => client.disconnect());
    connected = true;
    return {
      client,
      raw: (command, ...args) => client.call(command, ...args),
      close: async () => {
        client.disconnect();
      },
    };
  },
  'node-redis': async (url) => {
    let connected = false;
    const client = createClient({
      url,
      disableOfflineQueue: true,
      socket: { reconnectStrategy: (_retries, cause) => (connected ? 50 : cause) },
    });
    client.on('error', () => {});
    await connectOrGiveUp(client.connect(), () => client.destroy());
    connected = true;
    return {
      client,
      raw: (command, ...args) => client.sendCommand([command, ...args]),
      close: async () => {
        client.destroy();
      },
    };
  },
};

/**
 * A first connection that fails, or has not succeeded within 5 s, fails the test
 * and closes the client: a client left retrying would keep Jest from ever exiting,
 * turning "REDIS_URL is set but Redis is unreachable" into a hang instead of a failure.
 */
async function connectOrGiveUp(connecting: Promise<unknown>, close: () => unknown): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`could not connect to REDIS_URL (${REDIS_URL}) within 5 s`)), 5000);
  });
  try {
    await Promise.race([connecting, deadline]);
  } catch (error) {
    close();
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

export function redisServerInstalled(): boolean {
  return spawnSync('redis-server', ['--version']).status === 0;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A redis-server of the test's own, which it can stop and start again on the same port. */
export async function privateRedisServer() {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    await waitFor(() => canConnect(port));
  };
  const stop = async () => {
    const exited = new Promise((resolve) => child?.once('exit', resolve));
    child?.kill('SIGKILL');
    await exited;
    await waitFor(async () => !(await canConnect(port)));
  };
  await start();
  return { url: `redis://127.0.0.1:${port}`, start, stop };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Polls a condition with a deadline; for servers coming up or going down, never for timing assertions. */
export async function waitFor(condition: () => Promise<boolean> | boolean, deadlineMs = 10_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error('condition not met before the deadline');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * For suites whose code under test (BullMQ) would wait for an unreachable Redis
 * rather than fail: with REDIS_URL set but nothing answering there, fail the
 * suite at once instead of test by test, at each test's timeout.
 */
export async function assertRedisReachable(url = REDIS_URL): Promise<void> {
  const { hostname, port } = new URL(url!);
  const reachable = await new Promise<boolean>((resolve) => {
    const socket = net.connect(Number(port || 6379), hostname);
    const timer = setTimeout(() => done(false), 3000);
    const done = (result: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
  if (!reachable) throw new Error(`REDIS_URL is set (${url}) but no Redis answers there`);
}
