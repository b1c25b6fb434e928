import { fork } from 'node:child_process';
import path from 'node:path';
import http from 'node:http';
import { MemoryReplayStore, MitpoWebhooks } from '../../src';
import { BullMQDeliveryQueue } from '../../src/bullmq';
import { signedDelivery } from '../../src/testing';
import { deliveryKeyOf } from '../helpers/delivery-key';
import { send } from '../helpers/http-client';
import { deferred, SECRET } from '../helpers/recorder';
import { listen } from '../helpers/servers';

async function serve(webhooks: MitpoWebhooks) {
  const middleware = webhooks.middleware();
  return listen(http.createServer((req, res) => middleware(req, res, () => res.writeHead(404).end())));
}

describe('close() without a queue', () => {
  it('answers new deliveries 503 shutting_down with Retry-After, before reading their body, and runs no handler', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const ran = jest.fn();
    webhooks.onAny(ran);
    const server = await serve(webhooks);
    try {
      await webhooks.close({ timeout: 1 });
      const reply = await send(server.url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }));
      expect(reply.status).toBe(503);
      expect(reply.json.error?.code).toBe('shutting_down');
      expect(reply.headers['retry-after']).toBe('10');
      // The body was never read, so the connection is closed rather than drained.
      expect(reply.headers.connection).toBe('close');
      expect(ran).not.toHaveBeenCalled();
    } finally {
      await server.close();
    }
  });

  it('waits for handlers that finish within the timeout, and answers them 200', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const started = deferred();
    const release = deferred();
    webhooks.onAny(async () => {
      started.resolve();
      await release.promise;
    });
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const answer = webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
    await started.promise;
    let closed = false;
    const closing = webhooks.close({ timeout: 30 }).then(() => (closed = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toBe(false);
    release.resolve();
    expect(await answer).toEqual({ status: 200, body: { success: true } });
    await closing;
    expect(closed).toBe(true);
  });

  it('releases, never completes, a delivery whose handlers outlive the timeout, and answers it 503', async () => {
    const store = new MemoryReplayStore();
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: store });
    const started = deferred();
    webhooks.onAny(async () => {
      started.resolve();
      await new Promise(() => {});
    });
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const answer = webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
    await started.promise;
    await webhooks.close({ timeout: 0.05 });
    expect(await answer).toMatchObject({ status: 503, body: { error: { code: 'shutting_down' } } });
    // Released: MITPO's retry (to another instance, or this one restarted) runs the handlers again.
    expect(await store.claim(deliveryKeyOf(delivery.body), 1000)).toBe('claimed');
  });

  // Found in review: answered 503 handler_timeout, the delivery no longer counted as under way, so close()
  // resolved at once, and the handlers, still running, later completed the claim on a store the app had closed.
  it('after a handler_timeout, still waits for the handlers running on: at the deadline their claim is released, never completed', async () => {
    const store = new MemoryReplayStore();
    const completed = jest.spyOn(store, 'complete');
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: store, handlerTimeout: 0.05 });
    const release = deferred();
    webhooks.onAny(() => release.promise);
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const answer = await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
    expect(answer).toMatchObject({ status: 503, body: { error: { code: 'handler_timeout' } } });
    await webhooks.close({ timeout: 0.1 });
    expect(await store.claim(deliveryKeyOf(delivery.body), 1000)).toBe('claimed');
    // The handlers end after close(): nothing reaches the store then.
    release.resolve();
    await release.promise;
    await new Promise((resolve) => setImmediate(resolve));
    expect(completed).not.toHaveBeenCalled();
  });

  it('refuses verify() once closed, with the same shutting_down the receiver answers', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    await expect(webhooks.verify({ rawBody: delivery.body, headers: delivery.headers })).resolves.toMatchObject({ event: 'dispatch.completed' });
    await webhooks.close({ timeout: 1 });
    await expect(webhooks.verify({ rawBody: delivery.body, headers: delivery.headers })).rejects.toMatchObject({ code: 'shutting_down', status: 503 });
  });

  it('resolves at once with nothing under way, and the same way when called twice', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const first = webhooks.close();
    expect(webhooks.close()).toBe(first);
    await first;
  });

  it('takes its timeout in seconds', () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    expect(() => webhooks.close({ timeout: 30_000 })).toThrow(/seconds, not milliseconds/);
    expect(() => webhooks.close({ timeout: -1 })).toThrow(/positive number of seconds/);
  });
});

describe('queue options', () => {
  const queue = () => new BullMQDeliveryQueue({ connection: { url: 'redis://127.0.0.1:1' }, enqueueTimeout: 0.1 });

  it('refuses replay beside queue, and a queue that is not one', async () => {
    const q = queue();
    expect(() => new MitpoWebhooks({ secret: SECRET, queue: q, replay: new MemoryReplayStore() })).toThrow(/replay and queue/);
    expect(() => new MitpoWebhooks({ secret: SECRET, queue: {} as never })).toThrow(/queue must be a DeliveryQueue/);
    await q.close();
  });

  it('needs a queue for startWorker(), and no close() before it', async () => {
    expect(() => new MitpoWebhooks({ secret: SECRET }).startWorker()).toThrow(/needs the queue option \(a BullMQDeliveryQueue, PostgresDeliveryQueue or MemoryDeliveryQueue\)/);
    const webhooks = new MitpoWebhooks({ secret: SECRET, queue: queue() });
    await webhooks.close({ timeout: 0.1 });
    expect(() => webhooks.startWorker()).toThrow(/after close/);
  });

  it.each([
    [{ connection: undefined }, /connection is required/],
    // Found in a hunt: ioredis takes these for no URL at all and connects to 127.0.0.1:6379, in silence.
    [{ connection: { url: undefined } }, /connection\.url is undefined: is REDIS_URL set\?/],
    [{ connection: { url: '' } }, /connection\.url is empty/],
    [{ name: 'a:b' }, /name must be/],
    [{ attempts: 0 }, /attempts must be/],
    [{ backoff: 100_000 }, /backoff is 100000 seconds/],
    [{ enqueueTimeout: 0 }, /enqueueTimeout must be a positive number of seconds/],
  ])('refuses bad queue options: %j', (options, message) => {
    expect(() => new BullMQDeliveryQueue({ connection: { url: 'redis://127.0.0.1:1' }, ...options } as never)).toThrow(message);
  });
});

describe('close() of a BullMQ worker with Redis out of reach', () => {
  it('resolves without waiting out its timeout when no delivery is running', async () => {
    const troubleLogged = deferred();
    const logger = { debug() {}, info() {}, warn: () => troubleLogged.resolve(), error: () => troubleLogged.resolve() };
    const queue = new BullMQDeliveryQueue({ connection: { url: 'redis://127.0.0.1:1' }, enqueueTimeout: 0.1 });
    const webhooks = new MitpoWebhooks({ secret: SECRET, queue, logger });
    webhooks.on('dispatch.completed', async () => undefined);
    webhooks.startWorker();
    // The worker is running, and has found Redis out of reach.
    await troubleLogged.promise;
    // A timeout far past the test's own: a close() that waits it out fails the test.
    await webhooks.close({ timeout: 600 });
  }, 20_000);
});

describe('close() and deliveries caught by its deadline', () => {
  const receiveOf = (webhooks: MitpoWebhooks) => {
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    return webhooks.receive({ rawBody: body, headers });
  };

  it('starts no handler once the deadline passed while the store was answering a claim: the claim is released, the answer 503', async () => {
    const store = new MemoryReplayStore();
    const claimAsked = deferred();
    const claimAnswer = deferred();
    const claim = store.claim.bind(store);
    store.claim = async (...args) => {
      claimAsked.resolve();
      await claimAnswer.promise;
      return claim(...args);
    };
    const released = jest.spyOn(store, 'release');
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: store });
    const ran = jest.fn();
    webhooks.onAny(ran);
    const answer = receiveOf(webhooks);
    await claimAsked.promise;
    // The deadline passes, and close() gives up waiting, while the claim is still unanswered.
    await webhooks.close({ timeout: 0.05 });
    claimAnswer.resolve();
    const { status, body } = await answer;
    expect({ status, code: (body as { error?: { code: string } }).error?.code }).toEqual({ status: 503, code: 'shutting_down' });
    expect(ran).not.toHaveBeenCalled();
    expect(released).toHaveBeenCalledTimes(1);
  });

  // Found in a mutation hunt: with replay: false no claim is taken, so only the check as the
  // handling starts keeps a delivery that was still being verified at the deadline from running.
  it('starts no handler, with replay: false, for a delivery whose verification ended past the deadline: 503 shutting_down', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask', 'Date'] });
    try {
      const secretAsked = deferred();
      const secret = deferred<string>();
      const webhooks = new MitpoWebhooks({ secret: () => (secretAsked.resolve(), secret.promise), replay: false });
      const ran = jest.fn();
      webhooks.onAny(ran);
      const answer = receiveOf(webhooks);
      await secretAsked.promise;
      const closing = webhooks.close({ timeout: 1 });
      jest.advanceTimersByTime(1000); // the deadline passes while the secret is still being fetched
      secret.resolve(SECRET);
      const { status, body } = await answer;
      expect({ status, code: (body as { error?: { code: string } }).error?.code }).toEqual({ status: 503, code: 'shutting_down' });
      expect(ran).not.toHaveBeenCalled();
      await closing;
    } finally {
      jest.useRealTimers();
    }
  });

  it('resolves only once an abandoned delivery was released and answered', async () => {
    const store = new MemoryReplayStore();
    const order: string[] = [];
    const release = store.release.bind(store);
    // The release is held until close() has had every chance to resolve without it.
    const releaseStarted = deferred();
    const releaseAnswer = deferred();
    store.release = async (...args) => {
      releaseStarted.resolve();
      await releaseAnswer.promise;
      await release(...args);
      order.push('release reached the store');
    };
    const webhooks = new MitpoWebhooks({ secret: SECRET, replay: store });
    const started = deferred();
    webhooks.onAny(() => {
      started.resolve();
      return new Promise(() => {}); // never settles
    });
    const answer = receiveOf(webhooks).then(({ status }) => order.push(`answered ${status}`));
    await started.promise;
    const closing = webhooks.close({ timeout: 0.05 }).then(() => order.push('close() resolved'));
    await releaseStarted.promise;
    await new Promise((resolve) => setImmediate(resolve));
    releaseAnswer.resolve();
    await closing;
    await answer;
    expect(order).toEqual(['release reached the store', 'answered 503', 'close() resolved']);
  });
});

describe('SIGTERM under load', () => {
  it.each([
    ['honouring Retry-After as MITPO does (no request after a 503)', true],
    ['ignoring Retry-After (reconnecting at once after a 503)', false],
  ])('with clients %s, answers every request on a kept-alive connection 200 or 503 shutting_down, resetting none', async (_name, honoursRetryAfter) => {
    const child = fork(path.join(__dirname, '../helpers/sigterm-receiver.ts'), [], {
      execArgv: ['-r', 'ts-node/register/transpile-only'],
      env: { ...process.env, SECRET },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    try {
      const { port } = await new Promise<{ port: number }>((resolve) => child.once('message', resolve as never));
      const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
      const outcomes = new Map<string, number>();
      const count = (outcome: string) => outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      const post = () =>
        new Promise<string>((resolve) => {
          const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
          const req = http.request({ port, host: '127.0.0.1', path: '/webhooks/mitpo', method: 'POST', headers, agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(String(res.statusCode)));
            res.on('error', () => resolve('reset'));
          });
          // Refused: the server no longer listens, and the request was never sent. Anything else cut it off.
          req.on('error', (error: NodeJS.ErrnoException) =>
            resolve(error.code === 'ECONNREFUSED' ? 'refused' : `reset (${error.code ?? error.message}${req.reusedSocket ? ', kept-alive connection' : ', new connection'})`),
          );
          req.end(body);
        });
      let sent = 0;
      // Each client sends as fast as it is answered, as MITPO does under load, and honours
      // 503's Retry-After as MITPO does: it sends nothing more once it got one.
      const client = async () => {
        for (let i = 0; i < 5000; i++) {
          const outcome = await post();
          count(outcome.startsWith('reset') ? 'reset' : outcome);
          if (outcome.startsWith('reset')) count(outcome);
          if (outcome === 'refused' || (honoursRetryAfter && outcome === '503')) return;
          if ((sent += 1) === 300) child.kill('SIGTERM');
        }
      };
      await Promise.all(Array.from({ length: 16 }, client));
      agent.destroy();
      const seen = Object.fromEntries(outcomes);
      // A client that reconnects at once may open a connection at the instant the listener
      // closes, which the kernel resets before anything reads it (as it would refuse it a
      // moment later); nothing on a connection the receiver served is ever reset.
      const allowed = (outcome: string) => ['200', '503', 'refused'].includes(outcome) || (!honoursRetryAfter && (outcome === 'reset' || outcome.includes('new connection')));
      expect(Object.keys(seen).filter((outcome) => !allowed(outcome))).toEqual([]);
      expect(seen['200']).toBeGreaterThanOrEqual(300);
      expect(seen['503']).toBeGreaterThan(0);
    } finally {
      child.kill('SIGKILL');
    }
  }, 30_000);
});

// Found in a hunt: close()'s deadline was an unref'd timer, so with a handler that never settles
// and nothing else left to keep the process alive, the process ended before close() resolved,
// and the code the app put after `await close()` never ran.
describe('close() in a process with nothing else to keep it alive', () => {
  it('resolves at its deadline, and the code after it runs', async () => {
    const script = `
      const { MitpoWebhooks } = require(${JSON.stringify(path.join(__dirname, '../../dist/index.js'))});
      const { signedDelivery } = require(${JSON.stringify(path.join(__dirname, '../../dist/testing/index.js'))});
      const webhooks = new MitpoWebhooks({ secret: process.env.SECRET, handlerTimeout: 0.1 });
      webhooks.onAny(() => new Promise(() => {}));
      const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: process.env.SECRET });
      void (async () => {
        console.log('answered', (await webhooks.receive({ rawBody: body, headers })).status);
        await webhooks.close({ timeout: 0.2 });
        console.log('closed');
      })();
    `;
    const child = fork('-e', [script], { execPath: process.execPath, execArgv: [], env: { ...process.env, SECRET }, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(0);
    expect(output.trim().split('\n')).toEqual(['answered 503', 'closed']);
  });

  // Found in review of the fix above: when closing the queue failed, close() rejected but its
  // deadline's timer stayed, and held the process for the rest of the timeout.
  it('holds the process no longer once it rejected (a queue whose close fails)', async () => {
    const script = `
      const { MitpoWebhooks } = require(${JSON.stringify(path.join(__dirname, '../../dist/index.js'))});
      const queue = { enqueue: async () => 'queued', startWorker: () => ({ close: async () => undefined }), close: async () => { throw new Error('the queue could not close'); } };
      const webhooks = new MitpoWebhooks({ secret: process.env.SECRET, queue });
      webhooks.close({ timeout: 600 }).catch((error) => console.log('rejected:', error.message));
    `;
    const child = fork('-e', [script], { execPath: process.execPath, execArgv: [], env: { ...process.env, SECRET }, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      // With the timer held, this exit would come after 600 s, long past the test's own timeout.
      expect(await new Promise<number | null>((resolve) => child.once('exit', resolve))).toBe(0);
      expect(output.trim()).toBe('rejected: the queue could not close');
    } finally {
      child.kill();
    }
  });
});
