import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Job, Queue, RedisConnection, Worker } from 'bullmq';
import IORedis from 'ioredis';
import { MitpoWebhooks, type DeliveryContext } from '../../src';
import { BullMQDeliveryQueue } from '../../src/bullmq';
import { jobIdOf } from '../../src/bullmq/job-id';
import type { DeliveryQueue } from '../../src/queue/delivery-queue';
import { signedDelivery } from '../../src/testing';
import { deliveryKeyOf } from '../helpers/delivery-key';
import { send } from '../helpers/http-client';
import { deferred, SECRET } from '../helpers/recorder';
import { queuedReceivers } from '../helpers/queued-receivers';
import { nextMessage, startHangingWorkerProcess, startWorkerProcess } from '../helpers/worker-process';
import { assertRedisReachable, describeWithRedis, privateRedisServer, REDIS_URL, redisServerInstalled, waitFor } from '../helpers/redis';
import { runCli } from '../helpers/run-cli';
import { agedOutRetry } from '../helpers/aged-out-retry';
import { resourceKeys } from '../../src/redis/resource-keys';
import { freezingProxy } from '../helpers/freezing-proxy';
import { mount, type RunningServer } from '../helpers/servers';

const describeRedis = describeWithRedis('the BullMQ queue tests');

describeRedis('queued processing on BullMQ', () => {
  let name: string;
  let inspect: Queue;
  const { receiver, closeAll } = queuedReceivers(() => name);
  const servers: RunningServer[] = [];
  const children: ChildProcess[] = [];

  async function serve(webhooks: MitpoWebhooks) {
    const server = await mount('Express 5 route', webhooks);
    servers.push(server);
    return server;
  }

  const stateOf = async (body: string) => (await inspect.getJob(jobIdOf(deliveryKeyOf(body))))?.getState();

  /** A job as close() left it: put back unstarted is delayed, its hand-over counted as a deferral, not an attempt. */
  const leftAs = async (body: string) => {
    const job = await inspect.getJob(jobIdOf(deliveryKeyOf(body)));
    return { state: await job?.getState(), deferrals: job?.data.deferrals };
  };

  /** Starts the worker, closes it once a Redis call held on its way is reached, then lets that call through. */
  async function closeWhileHeld(webhooks: MitpoWebhooks, held: { reached: Promise<unknown>; release: () => void }) {
    webhooks.startWorker({ concurrency: 1 });
    await held.reached;
    const closed = webhooks.close({ timeout: 5 });
    await new Promise((resolve) => setImmediate(resolve));
    held.release();
    await closed;
  }

  /**
   * A worker reaching Redis through `proxy`, whose one delivery's handlers are under
   * way when Redis drops out of reach, and finish just after; `atStart` runs first in them.
   */
  async function finishWhileRedisIsAway(
    proxy: Awaited<ReturnType<typeof freezingProxy>>,
    lockDuration: number,
    delivery: ReturnType<typeof signedDelivery>,
    atStart: () => unknown = () => undefined,
  ) {
    const webhooks = receiver({ connection: { url: proxy.url }, enqueueTimeout: 0.1, lockDuration }, { logger: { debug() {}, info() {}, warn() {}, error() {} } });
    const started = deferred();
    const finish = deferred();
    let runs = 0;
    webhooks.onAny(async () => {
      runs += 1;
      await atStart();
      started.resolve();
      await finish.promise;
    });
    webhooks.startWorker();
    expect((await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
    await started.promise;
    proxy.drop();
    finish.resolve();
    return { webhooks, runs: () => runs };
  }

  beforeAll(() => assertRedisReachable());
  beforeEach(() => {
    name = `mitpo-test-${randomUUID()}`;
    inspect = new Queue(name, { connection: { url: REDIS_URL! } });
  });
  afterEach(async () => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
    await Promise.all(servers.splice(0).map((server) => server.close()));
    await closeAll();
    await inspect.obliterate({ force: true }).catch(() => undefined);
    await inspect.close();
  });

  it('answers 200 queued only once the job is in Redis, with the raw body and headers, and runs no handler there', async () => {
    const webhooks = receiver();
    const ran = jest.fn();
    webhooks.onAny(ran);
    const server = await serve(webhooks);
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const reply = await send(server.url, delivery);
    expect(reply.status).toBe(200);
    expect(reply.json).toEqual({ success: true, queued: true });
    const job = await inspect.getJob(jobIdOf(deliveryKeyOf(delivery.body)));
    expect(await job?.getState()).toBe('waiting');
    expect(Buffer.from(job!.data.body, 'base64').toString()).toBe(delivery.body);
    expect(Object.keys(job!.data.headers).sort()).toEqual(['content-type', 'x-mitpo-event', 'x-mitpo-signature', 'x-mitpo-timestamp']);
    expect(ran).not.toHaveBeenCalled();
  });

  it('runs nothing MITPO did not sign as stored: jobs an attacker adds to Redis are removed unrun, unreported, with a warning', async () => {
    const warnings: Array<Record<string, unknown>> = [];
    const logger = { debug() {}, info() {}, error() {}, warn: (record: Record<string, unknown>) => void warnings.push(record) };
    const webhooks = receiver({}, { logger });
    const keys: string[] = [];
    webhooks.onAny((_event, ctx) => void keys.push(ctx.deliveryKey));
    const deadLetter = jest.fn();
    webhooks.onDeadLetter(deadLetter);
    const server = await serve(webhooks);
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await send(server.url, delivery)).status).toBe(200);
    webhooks.startWorker();
    await waitFor(async () => (await stateOf(delivery.body)) === 'completed');
    const done = await inspect.getJob(jobIdOf(deliveryKeyOf(delivery.body)));

    // The attacker, with write access to Redis: the completed job again under new ids (one
    // with a delivery key of their choosing), and a job signed with a secret of their own.
    const forged = signedDelivery({ event: 'dispatch.completed', secret: 'whsec_attacker' });
    const forgedHeaders = Object.fromEntries(Object.entries(forged.headers).map(([name, value]) => [name.toLowerCase(), value]));
    const added = [
      await inspect.add('mitpo-delivery', done!.data, { jobId: 'replayed-under-a-new-id' }),
      await inspect.add('mitpo-delivery', { ...done!.data, deliveryKey: 'attacker-chosen-key' }, { jobId: 'replayed-with-another-key' }),
      await inspect.add('mitpo-delivery', { ...done!.data, body: Buffer.from(forged.body).toString('base64'), headers: forgedHeaders }, { jobId: jobIdOf(deliveryKeyOf(forged.body)) }),
      // Fields of types the receiver never writes, and no data at all.
      await inspect.add('mitpo-delivery', { ...done!.data, body: 12345 }, { jobId: 'a-body-that-is-no-text' }),
      await inspect.add('mitpo-delivery', null, { jobId: 'no-data-at-all' }),
    ];
    await waitFor(async () => (await Promise.all(added.map((job) => inspect.getJob(job.id!)))).every((job) => job === undefined));
    expect(keys).toEqual([deliveryKeyOf(delivery.body)]);
    expect(deadLetter).not.toHaveBeenCalled();
    expect(warnings.filter((record) => record.code === 'tampered_delivery')).toHaveLength(5);
    expect(await stateOf(delivery.body)).toBe('completed');
  });

  it('sends a delivery to Redis once: copies arriving together share one enqueue, a later copy is found by its id', async () => {
    const add = jest.spyOn(Queue.prototype, 'add');
    try {
      const webhooks = receiver();
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      const receive = () => webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
      const answers = await Promise.all([receive(), receive(), receive()]);
      expect(answers.map((answer) => answer.body)).toEqual([
        { success: true, queued: true },
        { success: true, duplicate: true },
        { success: true, duplicate: true },
      ]);
      expect((await receive()).body).toEqual({ success: true, duplicate: true });
      expect(add).toHaveBeenCalledTimes(1);
    } finally {
      add.mockRestore();
    }
  });

  it('with Redis frozen, caps the bytes waiting for it (503 past maxPendingBytes) and frees them at enqueueTimeout', async () => {
    const proxy = await freezingProxy(REDIS_URL!);
    try {
      const webhooks = receiver({ connection: { url: proxy.url }, enqueueTimeout: 1, maxPendingBytes: 3 * 1024 * 1024 });
      // Connected and warm, then frozen: commands now wait for ever unless something gives up.
      const first = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect((await webhooks.receive({ rawBody: first.body, headers: first.headers })).status).toBe(200);
      proxy.freeze();
      const big = (n: number) => signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: `big-${n}`, channel: 'meta_ads', status: 'completed', notes: 'x'.repeat(900 * 1024) } });
      const order: number[] = [];
      const answers = Array.from({ length: 5 }, (_, n) => big(n)).map((delivery, n) =>
        webhooks.receive({ rawBody: delivery.body, headers: delivery.headers }).then((answer) => (order.push(n), answer)),
      );
      const settled = await Promise.all(answers);
      expect(settled.map((answer) => (answer.body as { error?: { code: string } }).error?.code)).toEqual(Array(5).fill('queue_unavailable'));
      // Three fit under the cap and waited for Redis until enqueueTimeout; the two past it were refused first, at once.
      expect(order.slice(0, 2).sort()).toEqual([3, 4]);
    } finally {
      await proxy.close();
    }
  });

  // Found in review: with the app's own Redis client (no command timeout of ours), the bytes
  // were released at the 503 while the enqueue still waited for Redis with the body.
  it("keeps maxPendingBytes while enqueues on the app's own client wait for a frozen Redis: past it, refused at once", async () => {
    const proxy = await freezingProxy(REDIS_URL!);
    const client = new IORedis(proxy.url, { maxRetriesPerRequest: null });
    try {
      const webhooks = receiver({ connection: client, enqueueTimeout: 0.5, maxPendingBytes: 3 * 1024 * 1024 });
      const causes: string[] = [];
      webhooks.onFailure((error) => causes.push(String((error.cause as Error | undefined)?.message)));
      const first = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect((await webhooks.receive({ rawBody: first.body, headers: first.headers })).status).toBe(200);
      proxy.freeze();
      const big = (n: number) => signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: `big-${n}`, channel: 'meta_ads', status: 'completed', notes: 'x'.repeat(900 * 1024) } });
      const receiveAll = (deliveries: ReturnType<typeof big>[]) => Promise.all(deliveries.map((delivery) => webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })));
      // Three fit under the cap and wait for Redis, which never answers: 503 at enqueueTimeout.
      expect((await receiveAll([big(0), big(1), big(2)])).map((answer) => answer.status)).toEqual([503, 503, 503]);
      expect(causes).toEqual(Array(3).fill('Redis did not acknowledge the delivery within 0.5 s'));
      // Their commands still hold the bodies, so the next deliveries are refused at once, never held.
      causes.length = 0;
      expect((await receiveAll([big(3), big(4)])).map((answer) => answer.status)).toEqual([503, 503]);
      expect(causes).toEqual(Array(2).fill(`more than maxPendingBytes (${3 * 1024 * 1024}) of deliveries are waiting for Redis`));
    } finally {
      client.disconnect();
      await proxy.close();
    }
  });

  it('warns when a deliveryKey of your own is taken by a delivery with other bytes, reading the stored job only then', async () => {
    const warnings: Array<Record<string, unknown>> = [];
    const logger = { debug() {}, info() {}, error() {}, warn: (record: Record<string, unknown>) => void warnings.push(record) };
    const webhooks = receiver({}, { logger, deliveryKey: (event) => `key-${String((event.data as { dispatch_id?: string }).dispatch_id)}` });
    const first = signedDelivery({ event: 'dispatch.accepted', secret: SECRET, data: { dispatch_id: 'dsp_9', channel: 'meta_ads', status: 'accepted' } });
    const other = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 'dsp_9', channel: 'meta_ads', status: 'completed' } });
    const receive = (delivery: typeof first) => webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
    expect((await receive(first)).body).toEqual({ success: true, queued: true });
    expect((await receive(first)).body).toEqual({ success: true, duplicate: true });
    expect(warnings).toEqual([]);
    expect((await receive(other)).body).toEqual({ success: true, duplicate: true });
    expect(warnings).toEqual([expect.objectContaining({ code: 'delivery_key_collision', deliveryKey: 'key-dsp_9' })]);
  });

  describe('two deliveries with other bytes given one key of your own at the same moment', () => {
    const byDispatch = (event: { data: unknown }) => `key-${String((event.data as { dispatch_id?: string }).dispatch_id)}`;
    const pair = (): [ReturnType<typeof signedDelivery>, ReturnType<typeof signedDelivery>] => [
      signedDelivery({ event: 'dispatch.accepted', secret: SECRET, data: { dispatch_id: 'dsp_5', channel: 'meta_ads', status: 'accepted' } }),
      signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 'dsp_5', channel: 'meta_ads', status: 'completed' } }),
    ];
    const collisions = (records: Array<Record<string, unknown>>) => records.filter((record) => record.code === 'delivery_key_collision');

    it('queues one and answers the other as a collision, in one process (the second shares the first one\'s enqueue)', async () => {
      const warnings: Array<Record<string, unknown>> = [];
      const logger = { debug() {}, info() {}, error() {}, warn: (record: Record<string, unknown>) => void warnings.push(record) };
      const webhooks = receiver({}, { logger, deliveryKey: byDispatch });
      const answers = await Promise.all(pair().map((delivery) => webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })));
      expect(answers.map((answer) => answer.body)).toEqual([
        { success: true, queued: true },
        { success: true, duplicate: true },
      ]);
      expect(collisions(warnings)).toEqual([expect.objectContaining({ deliveryKey: 'key-dsp_5' })]);
    });

    it('answers a collision, not queued, when another instance queued its delivery between this one\'s check and its add', async () => {
      const warnings: Array<Record<string, unknown>> = [];
      const logger = { debug() {}, info() {}, error() {}, warn: (record: Record<string, unknown>) => void warnings.push(record) };
      const [first, other] = pair();
      const elsewhere = receiver({}, { deliveryKey: byDispatch });
      const queue = new BullMQDeliveryQueue({ connection: { url: REDIS_URL! }, name });
      const here = receiver(queue, { logger, deliveryKey: byDispatch });
      // The race, made certain: this instance finds the key free (its first look, the only one this
      // spy changes), then the other instance's job lands. The queue keeps BullMQ's Queue private.
      const check = Queue.prototype.getJobState;
      let raced = false;
      const spy = jest.spyOn(Queue.prototype, 'getJobState').mockImplementation(async function (this: Queue, jobId: string) {
        const state = await check.call(this, jobId);
        if (!raced) {
          raced = true;
          expect((await elsewhere.receive({ rawBody: first.body, headers: first.headers })).body).toEqual({ success: true, queued: true });
        }
        return state;
      });
      try {
        expect((await here.receive({ rawBody: other.body, headers: other.headers })).body).toEqual({ success: true, duplicate: true });
      } finally {
        spy.mockRestore();
      }
      expect(collisions(warnings)).toEqual([expect.objectContaining({ deliveryKey: 'key-dsp_5' })]);
      const stored = await inspect.getJob(jobIdOf('key-dsp_5'));
      expect(Buffer.from(stored!.data.body, 'base64').toString()).toBe(first.body);
    });
  });

  it('with a deliveryKey of your own, runs once a delivery an older version refused and kept, then MITPO\'s retry of it', async () => {
    const webhooks = receiver({}, { deliveryKey: (event) => `key-${String((event.data as { dispatch_id?: string }).dispatch_id)}` });
    const keys: string[] = [];
    webhooks.onAny((_event, ctx) => void keys.push(ctx.deliveryKey));
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 'dsp_8', channel: 'meta_ads', status: 'completed' } });
    // What an older version's receiver keeps when its schema refuses the payload: the bytes under their hash.
    const headers = Object.fromEntries(Object.entries(delivery.headers).map(([name, value]) => [name.toLowerCase(), value]));
    const refused = { code: 'invalid_payload', message: 'Event payload does not match the dispatch.completed schema' };
    const older = new BullMQDeliveryQueue({ connection: { url: REDIS_URL! }, name });
    try {
      expect(await older.enqueue({ deliveryKey: deliveryKeyOf(delivery.body), rawBody: Buffer.from(delivery.body), headers, receivedAt: Date.now(), refused }, 600_000)).toBe('queued');
    } finally {
      await older.close();
    }
    webhooks.startWorker();
    await waitFor(async () => (await stateOf(delivery.body)) === 'completed');
    expect((await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })).body).toEqual({ success: true, duplicate: true });
    await waitFor(async () => (await (await inspect.getJob(jobIdOf('key-dsp_8')))?.getState()) === 'completed');
    expect(keys).toEqual(['key-dsp_8']);
  });

  it('keeps an operator\'s retry through that move: a kept delivery past maxEventAge, retried from the CLI, runs under its own key', async () => {
    const webhooks = receiver({}, { maxEventAge: 60, deliveryKey: (event) => `key-${String((event.data as { dispatch_id?: string }).dispatch_id)}` });
    const keys: string[] = [];
    webhooks.onAny((_event, ctx) => void keys.push(ctx.deliveryKey));
    const hoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp: hoursAgo, data: { dispatch_id: 'dsp_late', channel: 'meta_ads', status: 'completed' } });
    const headers = Object.fromEntries(Object.entries(delivery.headers).map(([name, value]) => [name.toLowerCase(), value]));
    const refused = { code: 'invalid_payload', message: 'Event payload does not match the dispatch.completed schema' };
    const older = new BullMQDeliveryQueue({ connection: { url: REDIS_URL! }, name });
    try {
      await older.enqueue({ deliveryKey: deliveryKeyOf(delivery.body), rawBody: Buffer.from(delivery.body), headers, receivedAt: Date.now(), refused }, 600_000);
    } finally {
      await older.close();
    }
    // As `deliveries retry` marks it.
    const kept = await inspect.getJob(jobIdOf(deliveryKeyOf(delivery.body)));
    await kept!.updateData({ ...kept!.data, retriedByOperator: true });
    webhooks.startWorker();
    const moved = async () => (await (await inspect.getJob(jobIdOf('key-dsp_late')))?.getState()) ?? '';
    await waitFor(async () => ['completed', 'failed'].includes(await moved()));
    expect(await moved()).toBe('completed');
    expect(keys).toEqual(['key-dsp_late']);
  });

  it('answers a delivery whose key of your own holds a job with no data in Redis, never 503 for ever', async () => {
    const warnings: Array<Record<string, unknown>> = [];
    const logger = { debug() {}, info() {}, error() {}, warn: (record: Record<string, unknown>) => void warnings.push(record) };
    const webhooks = receiver({}, { logger, deliveryKey: (event) => `key-${String((event.data as { dispatch_id?: string }).dispatch_id)}` });
    await inspect.add('mitpo-delivery', null, { jobId: jobIdOf('key-dsp_7') });
    const delivery = signedDelivery({ event: 'dispatch.accepted', secret: SECRET, data: { dispatch_id: 'dsp_7', channel: 'meta_ads', status: 'accepted' } });
    expect((await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })).body).toEqual({ success: true, duplicate: true });
    expect(warnings).toEqual([expect.objectContaining({ code: 'delivery_key_collision', deliveryKey: 'key-dsp_7' })]);
  });

  it('refuses every failed check before queueing anything', async () => {
    const server = await serve(receiver());
    const forged = signedDelivery({ event: 'dispatch.completed', secret: 'whsec_attacker' });
    expect((await send(server.url, forged)).status).toBe(401);
    expect(await inspect.getJobCounts('waiting', 'active', 'completed', 'failed')).toEqual({ waiting: 0, active: 0, completed: 0, failed: 0 });
  });

  // Found in review: close() waited for BullMQ only one enqueueTimeout once no run was left, so a job
  // whose handlers finished while Redis was out of reach was left active, to run again once found stalled.
  it('close(): records a job that finished while Redis was out of reach once Redis is back, within its timeout', async () => {
    const proxy = await freezingProxy(REDIS_URL!);
    try {
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      const { webhooks, runs } = await finishWhileRedisIsAway(proxy, 30, delivery);
      // The run has ended (BullMQ tried to reconnect twice since, a second or more apart): only its outcome is left.
      await waitFor(() => proxy.refused() >= 2);
      const closed = webhooks.close({ timeout: 30 });
      // Back once BullMQ has tried again twice more, well past enqueueTimeout.
      await waitFor(() => proxy.refused() >= 4);
      proxy.restore();
      await closed;
      expect({ state: await stateOf(delivery.body), runs: runs() }).toEqual({ state: 'completed', runs: 1 });
    } finally {
      await closeAll();
      await proxy.close();
    }
  });

  // Found in review: a run whose lock lapsed is never recorded (BullMQ's record fails on the missing
  // lock, and says nothing), so close() waited out its whole timeout for that record with Redis away.
  it('close(): waits no longer than lockDuration for the record of a run whose lock lapsed', async () => {
    const proxy = await freezingProxy(REDIS_URL!);
    const redis = new IORedis(REDIS_URL!);
    try {
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      const lockKey = `bull:${name}:${jobIdOf(deliveryKeyOf(delivery.body))}:lock`;
      // As if its lock had lapsed in Redis.
      const { webhooks } = await finishWhileRedisIsAway(proxy, 1, delivery, () => redis.del(lockKey));
      // A timeout far past the test's own: a close() that waits it out fails the test.
      await webhooks.close({ timeout: 600 });
    } finally {
      await closeAll();
      await proxy.close();
      redis.disconnect();
    }
  });

  // Found when CI hung: BullMQ's close() quits, and a hung Redis never answers QUIT, so the
  // connection stayed open after close() gave up on it, and the process could not exit. Found
  // in review: pause() reconnected the worker's blocking connection after that, for good.
  it('close(): lets go of every connection to a hung Redis, so that the process can exit', async () => {
    const proxy = await freezingProxy(REDIS_URL!, { answersClose: false });
    try {
      const webhooks = receiver({ connection: { url: proxy.url }, enqueueTimeout: 0.2 });
      const handled = deferred();
      webhooks.onAny(() => handled.resolve());
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect((await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
      webhooks.startWorker();
      // Every connection set up (the worker ran the delivery): Redis hangs on a working receiver.
      // A connection caught still setting up is another case (the note's never-ready one).
      await handled.promise;
      await waitFor(() => proxy.open() >= 3);
      const accepted = proxy.accepted();
      proxy.freeze();
      await webhooks.close({ timeout: 1 });
      // BullMQ's pause() comes back with a connection once the one it closed has ended.
      await waitFor(() => proxy.accepted() > accepted);
      await waitFor(() => proxy.open() === 0);
    } finally {
      await proxy.close();
    }
  });

  /**
   * A worker in a process of its own, on Redis behind a proxy frozen from the start but for
   * its first `spared` connections, is closed; Redis then recovers, when a connection
   * brought back would stay up. The process's exit code: it must exit by itself.
   */
  async function exitAfterCloseWithRedisHung(spared: number) {
    const proxy = await freezingProxy(REDIS_URL!, { answersClose: false, spared });
    proxy.freeze();
    // A close() that ends before BullMQ's pause() comes back, as with a short enqueueTimeout.
    const child = startWorkerProcess(name, proxy.url, 0.2);
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      await nextMessage(child, (m) => m.ready === true);
      // The queue's connection and the worker's two.
      await waitFor(() => proxy.accepted() >= 3);
      const closed = nextMessage(child, (m) => m.closed === true);
      child.send('close');
      await closed;
      proxy.unfreeze();
      return await exited;
    } finally {
      child.kill('SIGKILL');
      await proxy.close();
    }
  }

  // The last note's never-ready case, found when CI hung on Node 26: Redis hung while the
  // worker's connections were still being set up. close() returned, then BullMQ's pause(),
  // begun by close(), reconnected the blocking connection for good: the process never exited.
  it('close(): lets the process exit when Redis hung while the worker was still setting up its connections', async () => {
    expect(await exitAfterCloseWithRedisHung(0)).toBe(0);
  });

  // Its cousin: the queue's connection and the worker's main one are set up; the third, the
  // worker's blocking one, hangs. pause() brought that one back after close() had ended it,
  // and close() had stopped waiting for it to be handed over.
  it('close(): lets the process exit when Redis hung after the worker set up its main connection, while it was setting up its blocking one', async () => {
    expect(await exitAfterCloseWithRedisHung(2)).toBe(0);
  });

  it('close(): lets go of every connection once a job that outlived its timeout ends, so that the process can exit', async () => {
    const proxy = await freezingProxy(REDIS_URL!);
    try {
      const webhooks = receiver({ connection: { url: proxy.url } });
      const started = deferred();
      const finish = deferred();
      webhooks.onAny(async () => {
        started.resolve();
        await finish.promise;
      });
      webhooks.startWorker();
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect((await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
      await started.promise;
      await webhooks.close({ timeout: 0.1 });
      finish.resolve();
      await waitFor(() => proxy.open() === 0);
    } finally {
      await proxy.close();
    }
  });

  // Found by a hunt: BullMQ waits for its first connection with no timeout, so the delivery
  // kept its bytes counted and was queued once Redis came up, after its 503.
  (redisServerInstalled() ? it : it.skip)('holds nothing for a delivery answered 503 before Redis was first reached, and never queues it later', async () => {
    const redis = await privateRedisServer();
    await redis.stop();
    let started = false;
    try {
      const first = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      const second = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      const webhooks = receiver({ connection: { url: redis.url }, enqueueTimeout: 0.5, maxPendingBytes: Buffer.byteLength(first.body) });
      const causes: string[] = [];
      webhooks.onFailure((error) => causes.push(String((error.cause as Error | undefined)?.message)));
      const handled: string[] = [];
      webhooks.onAny((_event, ctx) => void handled.push(ctx.deliveryKey));
      const receive = (delivery: typeof first) => webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
      expect((await receive(first)).status).toBe(503);
      // Once one delivery waited in vain, the next are refused at once: a long outage holds nothing per delivery.
      expect((await receive(second)).status).toBe(503);
      expect(causes).toEqual(['Redis did not acknowledge the delivery within 0.5 s', 'Redis has not been reached since the queue was made']);
      await redis.start();
      started = true;
      webhooks.startWorker();
      // MITPO's retries (503 while the connection comes back) are queued, not duplicates of a job that landed behind the 503.
      let retried: Awaited<ReturnType<typeof receive>> | undefined;
      await waitFor(async () => (retried = await receive(first)).status !== 503);
      expect(retried!.body).toEqual({ success: true, queued: true });
      expect((await receive(second)).body).toEqual({ success: true, queued: true });
      await waitFor(() => handled.length === 2);
      expect(handled.sort()).toEqual([deliveryKeyOf(first.body), deliveryKeyOf(second.body)].sort());
    } finally {
      await closeAll();
      if (started) await redis.stop();
    }
  });

  /**
   * BullMQ sets a connection up once (ready, then an INFO for Redis's version); Redis stalling
   * past the command timeout just then fails that INFO, as this does, deterministically.
   */
  const failSetUpOnce = (afterMs = 0) =>
    jest
      .spyOn(RedisConnection.prototype as unknown as { getRedisVersionAndType(): Promise<unknown> }, 'getRedisVersionAndType')
      .mockImplementationOnce(() => new Promise((_resolve, reject) => setTimeout(() => reject(new Error('Command timed out')), afterMs)));

  // Found by a hunt: BullMQ keeps a failed set-up for good, so every delivery after it was
  // answered 503 (MITPO retrying in vain) until the process restarted.
  it("queues MITPO's retry once Redis answers, after the first set-up of the queue's connection failed", async () => {
    await inspect.waitUntilReady(); // its set-up done, the one that fails is the receiver's
    const setUp = failSetUpOnce();
    const webhooks = receiver();
    const causes: string[] = [];
    webhooks.onFailure((error) => causes.push(String((error.cause as Error | undefined)?.message)));
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const receive = () => webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
    expect((await receive()).status).toBe(503);
    expect(causes).toEqual(['Command timed out']);
    expect(setUp).toHaveBeenCalledTimes(1);
    setUp.mockRestore();
    expect((await receive()).body).toEqual({ success: true, queued: true });
    expect(await stateOf(delivery.body)).toBe('waiting');
  });

  it('queues deliveries again after a set-up that failed only once a delivery had given up waiting for it', async () => {
    await inspect.waitUntilReady();
    // Redis stalls through the set-up for longer than enqueueTimeout, then the set-up fails.
    const setUp = failSetUpOnce(600);
    try {
      const webhooks = receiver({ enqueueTimeout: 0.3 });
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      const receive = () => webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
      expect((await receive()).status).toBe(503);
      let answer: Awaited<ReturnType<typeof receive>> | undefined;
      await waitFor(async () => (answer = await receive()).status !== 503);
      expect(answer!.body).toEqual({ success: true, queued: true });
    } finally {
      setUp.mockRestore();
    }
  });

  it("with ordering, runs the deliveries of a worker whose queue's connection failed its first set-up, never dead letters them unrun", async () => {
    await inspect.waitUntilReady();
    const setUp = failSetUpOnce();
    const queue = new BullMQDeliveryQueue({ connection: { url: REDIS_URL! }, name, backoff: 0.05, lockDuration: 1, attempts: 2 });
    const worker = receiver(queue, { ordering: true });
    await expect(queue.depth()).rejects.toThrow('Command timed out');
    setUp.mockRestore();
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await receiver().receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
    let runs = 0;
    worker.onAny(() => void (runs += 1));
    worker.startWorker();
    await waitFor(async () => ['completed', 'failed'].includes((await stateOf(delivery.body)) ?? ''));
    expect({ state: await stateOf(delivery.body), runs }).toEqual({ state: 'completed', runs: 1 });
  });

  // Found by a hunt: with lazyConnect, BullMQ's first connect rejects with Redis down, and
  // BullMQ keeps that failure: the worker never took a job, whenever Redis came up.
  (redisServerInstalled() ? it : it.skip)('with lazyConnect in its options, runs deliveries once Redis is up after a start with Redis down', async () => {
    const redis = await privateRedisServer();
    await redis.stop();
    let started = false;
    try {
      const troubles: string[] = [];
      const logger = { debug() {}, info() {}, warn() {}, error: (record: { code?: string }) => void troubles.push(String(record.code)) };
      const webhooks = receiver({ connection: { url: redis.url, lazyConnect: true }, enqueueTimeout: 0.5 }, { logger });
      let runs = 0;
      webhooks.onAny(() => void (runs += 1));
      webhooks.startWorker();
      await waitFor(() => troubles.includes('queue_unavailable')); // its first connect was refused
      await redis.start();
      started = true;
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      const receive = () => webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
      // The receiving side too: MITPO's retries are queued once Redis answers.
      let answer: Awaited<ReturnType<typeof receive>> | undefined;
      await waitFor(async () => (answer = await receive()).status !== 503);
      expect(answer!.body).toEqual({ success: true, queued: true });
      await waitFor(() => runs === 1, 15_000);
    } finally {
      await closeAll();
      if (started) await redis.stop();
    }
  }, 30_000);

  it('answers 503 queue_unavailable, quickly and with no handler run, when Redis cannot be reached', async () => {
    const queue = new BullMQDeliveryQueue({ connection: { url: 'redis://127.0.0.1:1', maxRetriesPerRequest: 1 }, name, enqueueTimeout: 0.3 });
    const webhooks = receiver(queue);
    const ran = jest.fn();
    webhooks.onAny(ran);
    const reply = await send((await serve(webhooks)).url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }));
    expect(reply.status).toBe(503);
    expect(reply.json.error?.code).toBe('queue_unavailable');
    expect(ran).not.toHaveBeenCalled();
  });

  it('answers duplicate while queued, while running and after completion, and runs the handlers once', async () => {
    const webhooks = receiver();
    const release = deferred();
    const started = deferred();
    let runs = 0;
    webhooks.onAny(async () => {
      runs += 1;
      started.resolve();
      await release.promise;
    });
    const server = await serve(webhooks);
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const again = () => send(server.url, { ...delivery, headers: { ...delivery.headers } });
    expect((await again()).json).toEqual({ success: true, queued: true });
    expect((await again()).json).toEqual({ success: true, duplicate: true }); // queued
    webhooks.startWorker();
    await started.promise;
    expect(await stateOf(delivery.body)).toBe('active');
    expect((await again()).json).toEqual({ success: true, duplicate: true }); // running
    release.resolve();
    await waitFor(async () => (await stateOf(delivery.body)) === 'completed');
    expect((await again()).json).toEqual({ success: true, duplicate: true }); // handled
    expect(runs).toBe(1);
  });

  it('retries a failing handler with backoff, ctx.attempt 1, 2, 3, then completes', async () => {
    const webhooks = receiver({ attempts: 5 });
    const attempts: number[] = [];
    const done = deferred();
    webhooks.onAny((_event, ctx: DeliveryContext) => {
      attempts.push(ctx.attempt);
      if (ctx.attempt < 3) throw new Error(`attempt ${ctx.attempt} fails`);
      done.resolve();
    });
    webhooks.startWorker();
    const delivery = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
    expect((await send((await serve(webhooks)).url, delivery)).status).toBe(200);
    await done.promise;
    await waitFor(async () => (await stateOf(delivery.body)) === 'completed');
    expect(attempts).toEqual([1, 2, 3]);
  });

  it('keeps a delivery that failed its last attempt as a dead letter, tells onDeadLetter, and retries it through the bin', async () => {
    const webhooks = receiver({ attempts: 2 });
    let fail = true;
    const handled = deferred();
    webhooks.onAny(() => {
      if (fail) throw new Error('the database is down');
      handled.resolve();
    });
    const deadLetters: Array<{ event: string | undefined; attempt: number; message: string }> = [];
    const told = deferred();
    webhooks.onDeadLetter((event, ctx, error) => {
      deadLetters.push({ event: event?.event, attempt: ctx.attempt, message: error.message });
      told.resolve();
    });
    webhooks.startWorker();
    const delivery = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
    expect((await send((await serve(webhooks)).url, delivery)).status).toBe(200);
    await told.promise;
    await waitFor(async () => (await stateOf(delivery.body)) === 'failed');
    expect(deadLetters).toEqual([{ event: 'dispatch.failed', attempt: 2, message: expect.stringContaining('A handler failed') }]);

    const cli = (...args: string[]) => runCli(['deliveries', ...args, '--queue', name], { env: { REDIS_URL } });
    const listed = await cli('list');
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(deliveryKeyOf(delivery.body));
    expect(listed.stdout).toContain('dispatch.failed');
    const shown = await cli('show', deliveryKeyOf(delivery.body));
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain('the database is down');
    expect(shown.stdout).toContain(delivery.body);
    // Attempts as the worker counts them, and every attempt's error.
    expect(shown.stdout).toContain('attempts:    2 of 2');
    expect(shown.stdout).toMatch(/error 1: .*the database is down[\s\S]*error 2: .*the database is down/);
    // Found by a hunt: each attempt's line began with our error's class name (RunFailure, UnrecoverableError).
    expect(shown.stdout).toMatch(/^error 1: +A handler failed/m);
    expect(shown.stdout).toMatch(/^error 2: +A handler failed/m);
    const asJson = await cli('show', deliveryKeyOf(delivery.body), '--json');
    expect(JSON.parse(asJson.stdout)).toMatchObject({
      deliveryKey: deliveryKeyOf(delivery.body),
      state: 'failed',
      event: 'dispatch.failed',
      attempts: 2,
      maxAttempts: 2,
      errors: [expect.stringContaining('the database is down'), expect.stringContaining('the database is down')],
      body: delivery.body,
    });
    const listedJson = (await cli('list', '--json')).stdout.trim().split('\n').map((line) => JSON.parse(line) as { deliveryKey: string });
    expect(listedJson.map((record) => record.deliveryKey)).toEqual([deliveryKeyOf(delivery.body)]);
    const typo = await runCli(['deliveries', 'list', '--queue', `${name}x`], { env: { REDIS_URL } });
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain(`no queue ${name}x in that Redis`);
    expect(typo.stderr).toContain(name);
    // Found in a hunt: a database Redis does not have was read as database 0 (ioredis goes on
    // there when its SELECT fails), so the listing, or a retry, was about another database's queues.
    const noSuchDatabase = await runCli(['deliveries', 'list', '--queue', name], { env: { REDIS_URL: Object.assign(new URL(REDIS_URL!), { pathname: '/99' }).href } });
    expect(noSuchDatabase.code).toBe(2);
    expect(noSuchDatabase.stderr).toContain('Redis has no database 99');
    expect(noSuchDatabase.stdout).toBe('');

    fail = false;
    const retried = await cli('retry', deliveryKeyOf(delivery.body));
    expect(retried.code).toBe(0);
    await handled.promise;
    await waitFor(async () => (await stateOf(delivery.body)) === 'completed');
    expect((await cli('list')).stdout).toContain('no failed deliveries');
    expect((await cli('show', 'no-such-key')).code).toBe(1);
  });

  // Found in a hunt (on Postgres): the position was kept only maxEventAge, which an operator's retry is exempt from.
  it("with ordering, an operator's retry of a dead letter after maxEventAge is stale when a later event of its resource was applied", async () => {
    const webhooks = receiver({ attempts: 1 }, { ordering: true, maxEventAge: 2, tolerance: 1 });
    const outcome = await agedOutRetry(webhooks, {
      retentionMs: 3000,
      isDeadLetter: async (body) => (await stateOf(body)) === 'failed',
      retry: (body) => runCli(['deliveries', 'retry', deliveryKeyOf(body), '--queue', name], { env: { REDIS_URL } }),
    });
    expect(outcome).toEqual({ applied: ['dispatch.completed'], stale: ['dispatch.accepted'] });
  }, 30_000);

  // Found in review (on Postgres): a worker that could not reach its store said nothing.
  it("logs a worker that cannot reach Redis, instead of waiting in silence", async () => {
    const errors: string[] = [];
    const logger = { debug() {}, info() {}, warn() {}, error: (_record: object, message: string) => void errors.push(message) };
    const webhooks = receiver({ connection: { url: 'redis://127.0.0.1:1' } }, { logger });
    webhooks.startWorker();
    await waitFor(() => errors.length > 0);
    expect(errors).toEqual(["mitpo-webhooks: the queue's worker could not take or settle deliveries; it tries again"]);
  });

  // Storage is not an authority: a job written by another tool must not stop the listing of every other one.
  it('the command line: lists and shows a job whose stored fields are not the types the receiver writes', async () => {
    receiver();
    const raw = new Queue(name, { connection: { url: REDIS_URL! } });
    try {
      await raw.add('odd', { deliveryKey: 42, headers: { 'x-mitpo-event': 123 }, receivedAt: 1e20, body: 12345 }, { jobId: 'odd-job' });
      await raw.add('empty', null, { jobId: 'empty-job' });
    } finally {
      await raw.close();
    }
    const cli = (...args: string[]) => runCli(['deliveries', ...args, '--queue', name], { env: { REDIS_URL } });
    const listed = await cli('list', '--state', 'waiting');
    expect(listed).toMatchObject({ code: 0, stderr: '' });
    expect(listed.stdout).toContain('odd-job');
    expect(listed.stdout).toContain('empty-job');
    const asJson = (await cli('list', '--state', 'waiting', '--json')).stdout.trim().split('\n').map((line) => JSON.parse(line) as unknown);
    expect(asJson).toEqual(expect.arrayContaining([expect.objectContaining({ deliveryKey: 'odd-job', event: null, receivedAt: null })]));
    expect((await cli('show', 'odd-job')).code).toBe(0);
  });

  it('the command line: prints a job\'s stored attempts and runs as numbers, never the text Redis holds', async () => {
    const webhooks = receiver();
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
    const jobId = jobIdOf(deliveryKeyOf(delivery.body));
    // Redis is not trusted: someone able to write to it rewrites the job's options.
    const redis = new IORedis(REDIS_URL!);
    try {
      await redis.hset(`bull:${name}:${jobId}`, 'opts', JSON.stringify({ attempts: '3\u001b]0;owned\u0007\u001b[2J\u001b[31mFAKE\u202e' }), 'ats', 'x', 'atm', 'y');
    } finally {
      redis.disconnect();
    }
    const cli = (...args: string[]) => runCli(['deliveries', ...args, '--queue', name], { env: { REDIS_URL } });
    for (const run of [await cli('show', deliveryKeyOf(delivery.body)), await cli('show', deliveryKeyOf(delivery.body), '--json'), await cli('list', '--state', 'waiting')]) {
      expect(run.code).toBe(0);
      for (const written of ['\u001b', '\u0007', '\u009b', '\u202e', 'FAKE', 'NaN']) expect(run.stdout).not.toContain(written);
    }
    expect(JSON.parse((await cli('show', deliveryKeyOf(delivery.body), '--json')).stdout)).toMatchObject({ attempts: 0, maxAttempts: 1 });
  });

  // Found in review: it read the failed list again after each page, so a retried job that a worker
  // failed again meanwhile was retried again, its handlers run and its dead letter reported each time.
  it('deliveries retry --all-failed retries each dead letter once, while workers fail them again', async () => {
    const webhooks = receiver({ attempts: 1 });
    webhooks.onAny(() => {
      throw new Error('the CRM is still down');
    });
    webhooks.startWorker({ concurrency: 50 });
    const count = 150;
    for (let i = 0; i < count; i++) {
      const delivery = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
      expect((await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
    }
    await waitFor(async () => (await inspect.getFailedCount()) === count, 20_000);
    const retried = await runCli(['deliveries', 'retry', '--all-failed', '--queue', name], { env: { REDIS_URL } });
    expect({ code: retried.code, stdout: retried.stdout }).toEqual({ code: 0, stdout: expect.stringContaining(`retried ${count} dead letters`) });
  }, 60_000);

  // Found in review: the command counted a run put off for its resource's turn as an attempt; the worker does not.
  it('deliveries show counts attempts as the worker does: a run deferred for its resource (ordering) is none', async () => {
    const webhooks = receiver({ attempts: 3, backoff: 60 }, { ordering: true });
    const release = deferred();
    const attempts: number[] = [];
    webhooks.on('dispatch.accepted', () => release.promise);
    webhooks.on('dispatch.completed', (_event, ctx) => {
      attempts.push(ctx.attempt);
      throw new Error('the CRM is down');
    });
    webhooks.startWorker({ concurrency: 2 });
    const data = (status: string) => ({ dispatch_id: 'dsp_show_attempts', channel: 'meta_ads', status });
    const first = signedDelivery({ event: 'dispatch.accepted', secret: SECRET, data: data('accepted'), timestamp: new Date(Date.now() - 60_000) });
    const second = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: data('completed'), timestamp: new Date(Date.now() - 1_000) });
    const jobOf = (body: string) => inspect.getJob(jobIdOf(deliveryKeyOf(body)));
    expect((await webhooks.receive({ rawBody: first.body, headers: first.headers })).status).toBe(200);
    await waitFor(async () => (await jobOf(first.body))?.attemptsStarted === 1);
    expect((await webhooks.receive({ rawBody: second.body, headers: second.headers })).status).toBe(200);
    await waitFor(async () => Number((await jobOf(second.body))?.data.deferrals ?? 0) >= 1, 15_000);
    release.resolve();
    await waitFor(async () => (await jobOf(second.body))?.attemptsMade === 1, 15_000);
    expect(attempts).toEqual([1]);
    const shown = await runCli(['deliveries', 'show', deliveryKeyOf(second.body), '--queue', name], { env: { REDIS_URL } });
    expect(shown.stdout).toContain('attempts:    1 of 3');
    const json = await runCli(['deliveries', 'show', deliveryKeyOf(second.body), '--queue', name, '--json'], { env: { REDIS_URL } });
    expect(JSON.parse(json.stdout).attempts).toBe(1);
  }, 40_000);

  it('answers 400 to an authentic delivery its schema refuses, and keeps it as a dead letter with the issues', async () => {
    const webhooks = receiver();
    const ran = jest.fn();
    webhooks.onAny(ran);
    const told = deferred<string | undefined>();
    webhooks.onDeadLetter((event, _ctx, error) => told.resolve(`${String(event)} ${(error as { code?: string }).code}`));
    webhooks.startWorker();
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 42 } as never });
    const reply = await send((await serve(webhooks)).url, delivery);
    expect(reply.status).toBe(400);
    expect(reply.json.error?.code).toBe('invalid_payload');
    expect(await told.promise).toBe('undefined invalid_payload');
    await waitFor(async () => (await stateOf(delivery.body)) === 'failed');
    const job = await inspect.getJob(jobIdOf(deliveryKeyOf(delivery.body)));
    expect(job!.data.refused.issues.map((issue: { path: string[] }) => issue.path.join('.'))).toContain('data.dispatch_id');
    expect(ran).not.toHaveBeenCalled();
  });

  it('hands the job of a worker SIGKILLed mid-job to another worker', async () => {
    const child = startHangingWorkerProcess(name);
    try {
      await nextMessage(child, (m) => m.ready === true);
      const server = await serve(receiver());
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect((await send(server.url, delivery)).status).toBe(200);
      await nextMessage(child, (m) => m.started === deliveryKeyOf(delivery.body));
      child.kill('SIGKILL');
      const survivor = receiver();
      const handled = deferred<DeliveryContext>();
      survivor.onAny((_event, ctx) => handled.resolve(ctx));
      survivor.startWorker();
      const ctx = await handled.promise;
      expect(ctx.deliveryKey).toBe(deliveryKeyOf(delivery.body));
      await waitFor(async () => (await stateOf(delivery.body)) === 'completed');
    } finally {
      child.kill('SIGKILL');
    }
  });

  /**
   * A delivery whose worker was SIGKILLed mid-job `deaths` times, then a healthy
   * worker: what that worker saw of it, and the job's failedReason.
   */
  async function afterWorkerDeaths(deaths: number, queueOptions: { attempts?: number } = {}) {
    const producer = receiver(queueOptions);
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await producer.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
    for (let death = 0; death < deaths; death++) {
      const child = startHangingWorkerProcess(name);
      children.push(child);
      await nextMessage(child, (m) => m.started === deliveryKeyOf(delivery.body));
      child.kill('SIGKILL');
    }
    const survivor = receiver();
    const outcome = deferred<string>();
    survivor.onAny((_event, ctx) => outcome.resolve(`handled on attempt ${ctx.attempt}`));
    survivor.onDeadLetter(() => outcome.resolve('dead letter reported'));
    survivor.startWorker();
    const timedOut = new Promise<string>((resolve) => setTimeout(() => resolve('neither: silently failed as stalled'), 8000).unref());
    const seen = await Promise.race([outcome.promise, timedOut]);
    const job = await inspect.getJob(jobIdOf(deliveryKeyOf(delivery.body)));
    return { seen, failedReason: job?.failedReason ?? null };
  }

  // A worker keeps BullMQ's maxStalledCount of 1 unless told otherwise: a job whose
  // worker died twice mid-job must still be run (attempts 5), or at the least be
  // reported to onDeadLetter, never failed silently as stalled.
  it('hands a job to another worker after its worker died twice mid-job (attempts 5), or at least reports the dead letter', async () => {
    expect(await afterWorkerDeaths(2)).toEqual({ seen: 'handled on attempt 3', failedReason: null });
  }, 30_000);

  // The job's attempts travel with it; the workers' queues are built without them (default 5),
  // so no limit of the workers' own may fail a job that still has attempts left.
  it('runs a job whose worker died more times than the workers’ own default attempts, while the job’s attempts (7) allow', async () => {
    expect(await afterWorkerDeaths(6, { attempts: 7 })).toEqual({ seen: 'handled on attempt 7', failedReason: null });
  }, 60_000);

  it('counts a run whose worker died as an attempt: killed on every attempt (attempts 3), it runs 3 times, then its dead letter is reported once', async () => {
    const producer = receiver({ attempts: 3 });
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await producer.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
    const attemptsSeen: unknown[] = [];
    for (let death = 0; death < 3; death++) {
      const child = startHangingWorkerProcess(name);
      children.push(child);
      attemptsSeen.push((await nextMessage(child, (m) => m.started === deliveryKeyOf(delivery.body))).attempt);
      child.kill('SIGKILL');
    }
    expect(attemptsSeen).toEqual([1, 2, 3]);
    const survivor = receiver({ attempts: 3 });
    const ran = jest.fn();
    survivor.onAny(ran);
    const deadLetters: string[] = [];
    const reported = deferred();
    survivor.onDeadLetter((event, ctx, error) => {
      deadLetters.push(`${event?.event} ${ctx.attempt} ${error.message}`);
      reported.resolve();
    });
    survivor.startWorker();
    await reported.promise;
    await waitFor(async () => (await stateOf(delivery.body)) === 'failed');
    expect(ran).not.toHaveBeenCalled();
    // Told as its last run, as the command counts the runs: three, not the start that only reported it.
    expect(deadLetters).toEqual([expect.stringMatching(/^dispatch\.completed 3 Every one of its 3 attempts started and none was recorded as finished/)]);
    const shown = await runCli(['deliveries', 'show', deliveryKeyOf(delivery.body), '--queue', name], { env: { REDIS_URL } });
    expect(shown.stdout).toContain('attempts:    3 of 3');
    // Found in review: an operator's retry then ran as attempt 5, as if the start that only reported it had been a run.
    expect((await runCli(['deliveries', 'retry', deliveryKeyOf(delivery.body), '--queue', name], { env: { REDIS_URL } })).code).toBe(0);
    await waitFor(async () => (await stateOf(delivery.body)) === 'completed', 20_000);
    expect(ran.mock.calls.map(([, ctx]) => (ctx as DeliveryContext).attempt)).toEqual([4]);
    const shownAfter = await runCli(['deliveries', 'show', deliveryKeyOf(delivery.body), '--queue', name], { env: { REDIS_URL } });
    expect(shownAfter.stdout).toContain('attempts:    4 of 3');
  }, 60_000);

  /** A delivery queued with `attempts`, whose first run's worker was SIGKILLed mid-job, and a receiver to run it next (not started). */
  async function afterOneWorkerDeath(attempts: number) {
    const producer = receiver({ attempts });
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await producer.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
    const child = startHangingWorkerProcess(name);
    children.push(child);
    await nextMessage(child, (m) => m.started === deliveryKeyOf(delivery.body));
    child.kill('SIGKILL');
    return { delivery, survivor: receiver({ attempts }) };
  }

  // Found in a hunt: the retry reset BullMQ's count of started runs, and a run whose worker died never
  // counted as a finished one, so the retried run took the number of the run before it.
  it("counts on, after an operator's retry, from every earlier run, a dead worker's included", async () => {
    const { delivery, survivor } = await afterOneWorkerDeath(2);
    const attempts: number[] = [];
    survivor.onAny((_event, ctx) => {
      attempts.push(ctx.attempt);
      throw new Error('the CRM is down');
    });
    const deadLetters: number[] = [];
    survivor.onDeadLetter((_event, ctx) => void deadLetters.push(ctx.attempt));
    survivor.startWorker();
    await waitFor(async () => deadLetters.length === 1 && (await stateOf(delivery.body)) === 'failed', 20_000);
    const retried = await runCli(['deliveries', 'retry', deliveryKeyOf(delivery.body), '--queue', name], { env: { REDIS_URL } });
    expect(retried.code).toBe(0);
    await waitFor(async () => deadLetters.length === 2 && (await stateOf(delivery.body)) === 'failed', 20_000);
    expect(attempts).toEqual([2, 3]);
    expect(deadLetters).toEqual([2, 3]);
    const shown = await runCli(['deliveries', 'show', deliveryKeyOf(delivery.body), '--queue', name], { env: { REDIS_URL } });
    expect(shown.stdout).toContain('attempts:    3 of 2');
  }, 40_000);

  // Found in review: a dead letter reported by a run that found its attempts used up by workers that died
  // never took its resource's turn, and its resource's position was not kept as long as it.
  it("with ordering, keeps the resource's position as long as a dead letter whose workers died", async () => {
    const producer = receiver({ attempts: 1 }, { ordering: true });
    const data = { dispatch_id: 'dsp_workers_died', channel: 'email', status: 'completed' };
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data });
    expect((await producer.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
    const child = startHangingWorkerProcess(name);
    children.push(child);
    await nextMessage(child, (m) => m.started === deliveryKeyOf(delivery.body));
    child.kill('SIGKILL');
    const survivor = receiver({ attempts: 1 }, { ordering: true });
    const reported = deferred();
    survivor.onDeadLetter(() => reported.resolve());
    survivor.startWorker();
    await reported.promise;
    await waitFor(async () => (await stateOf(delivery.body)) === 'failed');
    // Kept for the dead letters' 30 days, not the 3 days and 5 minutes of maxEventAge and tolerance.
    const applied = resourceKeys(`${inspect.qualifiedName}:`, 'dispatch:dsp_workers_died').applied;
    const client = (await inspect.getBackend().client) as unknown as { pttl(key: string): Promise<number> };
    expect(Number(await client.pttl(applied))).toBeGreaterThan(4 * 86_400_000);
  }, 40_000);

  // The worker counts the run whose worker died (BullMQ's attemptsStarted); BullMQ's
  // own retry decision counts only finished runs. They must agree on the last one.
  it('after one worker death and then failing handlers (attempts 3), reports the dead letter once, on attempt 3, and runs no fourth time', async () => {
    const { delivery, survivor } = await afterOneWorkerDeath(3);
    const runs: number[] = [];
    survivor.onAny((_event, ctx) => {
      runs.push(ctx.attempt);
      throw new Error('handler down');
    });
    const deadLetters: string[] = [];
    survivor.onDeadLetter((_event, ctx, error) => void deadLetters.push(`${ctx.attempt} ${error.message}`));
    survivor.startWorker();
    await waitFor(async () => (await stateOf(delivery.body)) === 'failed', 20_000);
    expect({ runs, deadLetters }).toEqual({ runs: [2, 3], deadLetters: [expect.stringMatching(/^3 A handler failed.*handler down/)] });
    const job = await inspect.getJob(jobIdOf(deliveryKeyOf(delivery.body)));
    expect(job?.failedReason).toMatch(/handler down/);
  }, 40_000);

  it('close(): refuses new deliveries with 503 shutting_down and Retry-After, lets a running job finish, then closes', async () => {
    const webhooks = receiver();
    const release = deferred();
    const started = deferred();
    let finished = false;
    webhooks.onAny(async () => {
      started.resolve();
      await release.promise;
      finished = true;
    });
    webhooks.startWorker();
    const server = await serve(webhooks);
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await send(server.url, delivery)).status).toBe(200);
    await started.promise;
    const closing = webhooks.close({ timeout: 10 });
    const refused = await send(server.url, signedDelivery({ event: 'dispatch.completed', secret: SECRET }));
    expect(refused.status).toBe(503);
    expect(refused.json.error?.code).toBe('shutting_down');
    expect(refused.headers['retry-after']).toBe('10');
    release.resolve();
    await closing;
    expect(finished).toBe(true);
    expect(await stateOf(delivery.body)).toBe('completed');
  });

  it('close(): leaves a job still running at the timeout to the recovery of stalled jobs', async () => {
    const webhooks = receiver();
    const started = deferred();
    webhooks.onAny(async () => {
      started.resolve();
      await new Promise(() => {});
    });
    webhooks.startWorker();
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await send((await serve(webhooks)).url, delivery)).status).toBe(200);
    await started.promise;
    await webhooks.close({ timeout: 0.2 });
    expect(await stateOf(delivery.body)).toBe('active');
    const next = receiver();
    const handled = deferred();
    next.onAny(() => handled.resolve());
    next.startWorker();
    await handled.promise;
    await waitFor(async () => (await stateOf(delivery.body)) === 'completed');
  });

  // Found in review: BullMQ hands the worker the next job with the previous one's completion
  // (fetchNext), even when close() paused the worker while that completion was on its way to
  // Redis. The job started after close() had seen nothing running, its lock was then no longer
  // renewed, and another worker ran it again while its first run's handlers were still going.
  it('close(): runs no job BullMQ hands over after close() began, and puts it back unstarted for another worker', async () => {
    // Locks longer than the suite's 1 s: on a loaded machine a lock could lapse between the fetch and the put-back.
    const first = receiver({ attempts: 1, lockDuration: 10 });
    const a = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 'disp_A', channel: 'email', status: 'completed' } });
    const b = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 'disp_B', channel: 'email', status: 'completed' } });
    const runs: string[] = [];
    const deadLetters: string[] = [];
    const ran = (who: string) => (_event: unknown, ctx: DeliveryContext) => void runs.push(`${who} ${ctx.deliveryKey === deliveryKeyOf(b.body) ? 'B' : 'A'} ${ctx.attempt}`);
    first.onAny(ran('first'));
    for (const delivery of [a, b]) expect((await first.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
    // A's completion (which asks BullMQ for the next job) is held on its way to Redis until close() has begun.
    const completing = deferred();
    const redisAnswers = deferred();
    const moveToCompleted = Job.prototype.moveToCompleted;
    const held = jest.spyOn(Job.prototype, 'moveToCompleted').mockImplementation(async function (this: Job, ...args: Parameters<Job['moveToCompleted']>) {
      completing.resolve();
      await redisAnswers.promise;
      return moveToCompleted.apply(this, args);
    });
    try {
      await closeWhileHeld(first, { reached: completing.promise, release: () => redisAnswers.resolve() });
    } finally {
      held.mockRestore();
    }
    // Put back, not left active with a lock nobody renews.
    expect(await leftAs(b.body)).toEqual({ state: 'delayed', deferrals: 1 });
    const second = receiver({ attempts: 1 });
    second.onAny(ran('second'));
    second.onDeadLetter((_event, _ctx, error) => void deadLetters.push(error.message));
    second.startWorker();
    await waitFor(async () => (await stateOf(b.body)) === 'completed', 15_000);
    expect({ runs, deadLetters }).toEqual({ runs: ['first A 1', 'second B 1'], deadLetters: [] });
  }, 30_000);

  // Found in review: after a run put off for its resource's turn, BullMQ fetches the next job in a
  // round trip of its own, which close() did not know to wait for; that job was left active, unrun.
  it('close(): puts back a job BullMQ fetches after a deferral, when close() came during the fetch', async () => {
    const data = (id: string, status: string) => ({ dispatch_id: id, channel: 'email', status });
    const holder = receiver({ lockDuration: 10 }, { ordering: true });
    const holding = deferred();
    const releaseHolder = deferred();
    holder.onAny(async () => {
      holding.resolve();
      await releaseHolder.promise;
    });
    const earlier = signedDelivery({ event: 'dispatch.accepted', secret: SECRET, data: data('disp_R', 'accepted'), timestamp: new Date(Date.now() - 60_000) });
    await holder.receive({ rawBody: earlier.body, headers: earlier.headers });
    holder.startWorker({ concurrency: 1 });
    await holding.promise;
    const later = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: data('disp_R', 'completed'), timestamp: new Date(Date.now() - 1000) });
    const other = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: data('disp_Z', 'completed') });
    for (const delivery of [later, other]) await holder.receive({ rawBody: delivery.body, headers: delivery.headers });
    // The deferred run's follow-up fetch is held on its way to Redis until close() has begun.
    let deferredOnce = false;
    const moveToDelayed = Job.prototype.moveToDelayed;
    const deferring = jest.spyOn(Job.prototype, 'moveToDelayed').mockImplementation(function (this: Job, ...args: Parameters<Job['moveToDelayed']>) {
      deferredOnce = true;
      return moveToDelayed.apply(this, args);
    });
    const fetching = deferred();
    const redisAnswers = deferred();
    // BullMQ's fetch of the next job, which its types keep protected.
    const workerFetch = Worker.prototype as unknown as { moveToActive: (...args: unknown[]) => Promise<unknown> };
    const moveToActive = workerFetch.moveToActive;
    const fetch = jest.spyOn(workerFetch, 'moveToActive').mockImplementation(async function (this: unknown, ...args: unknown[]) {
      if (deferredOnce) {
        fetching.resolve();
        await redisAnswers.promise;
      }
      return moveToActive.apply(this, args);
    });
    const deferrer = receiver({ lockDuration: 10 }, { ordering: true });
    const ran = jest.fn();
    deferrer.onAny(ran);
    try {
      try {
        await closeWhileHeld(deferrer, { reached: fetching.promise, release: () => redisAnswers.resolve() });
      } finally {
        deferring.mockRestore();
        fetch.mockRestore();
      }
      expect(ran).not.toHaveBeenCalled();
      // Looked at while the holder is still busy: once released, it takes the job put back (as it
      // should), and the job is then active or done. Looked at after that, this failed in CI.
      expect(await leftAs(other.body)).toEqual({ state: 'delayed', deferrals: 1 });
    } finally {
      releaseHolder.resolve();
    }
  }, 30_000);

  // Handlers already running are awaited at close(), but no new job is taken, even
  // while a receive begun before close() is still enqueueing.
  it('close(): takes no new job in the worker once close() was called', async () => {
    const inner = new BullMQDeliveryQueue({ connection: { url: REDIS_URL! }, name, backoff: 0.05, lockDuration: 1 });
    const enqueueing = deferred();
    const slowEnqueue = deferred();
    // A receive still under way when close() is called: its enqueue waits.
    const queue: DeliveryQueue = {
      enqueue: async (delivery, retentionMs) => {
        enqueueing.resolve();
        await slowEnqueue.promise;
        return inner.enqueue(delivery, retentionMs);
      },
      startWorker: (processor, options) => inner.startWorker(processor, options),
      close: () => inner.close(),
    };
    const webhooks = receiver(queue);
    const ran: string[] = [];
    webhooks.onAny((_event, ctx) => {
      ran.push(ctx.deliveryKey);
    });
    webhooks.startWorker();
    const first = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const underWay = webhooks.receive({ rawBody: first.body, headers: first.headers });
    await enqueueing.promise;
    const closing = webhooks.close({ timeout: 5 });

    // Another instance queues a delivery after this one began to close.
    const producer = receiver();
    const later = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
    expect((await producer.receive({ rawBody: later.body, headers: later.headers })).status).toBe(200);
    // The window in which a worker that is still taking jobs would take this one.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    slowEnqueue.resolve();
    await underWay;
    await closing;
    expect(ran).not.toContain(deliveryKeyOf(later.body));
  }, 20_000);
});
