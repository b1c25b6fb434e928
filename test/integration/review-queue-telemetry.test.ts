// Review findings on queued processing and shutdown (BullMQ). Each test states
// what API.md requires; each failed before its fix.
import type { ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { MitpoWebhooks } from '../../src';
import { BullMQDeliveryQueue } from '../../src/bullmq';
import { jobIdOf } from '../../src/bullmq/job-id';
import type { DeliveryQueue } from '../../src/queue/delivery-queue';
import { signedDelivery } from '../../src/testing';
import { deferred, SECRET } from '../helpers/recorder';
import { nextMessage, startHangingWorkerProcess } from '../helpers/worker-process';
import { assertRedisReachable, describeWithRedis, REDIS_URL } from '../helpers/redis';

const describeRedis = describeWithRedis('the review tests of queued processing');
const keyOf = (body: string) => createHash('sha256').update(body).digest('hex');

describeRedis('review: queued processing and shutdown', () => {
  beforeAll(() => assertRedisReachable());
  let name: string;
  let inspect: Queue;
  const opened: MitpoWebhooks[] = [];
  const children: ChildProcess[] = [];

  function receiver(queue?: DeliveryQueue) {
    const webhooks = new MitpoWebhooks({
      secret: SECRET,
      queue: queue ?? new BullMQDeliveryQueue({ connection: { url: REDIS_URL! }, name, backoff: 0.05, lockDuration: 1 }),
    });
    opened.push(webhooks);
    return webhooks;
  }

  beforeEach(() => {
    name = `mitpo-review-${randomUUID()}`;
    inspect = new Queue(name, { connection: { url: REDIS_URL! } });
  });
  afterEach(async () => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
    await Promise.all(opened.splice(0).map((webhooks) => webhooks.close({ timeout: 1 })));
    await inspect.obliterate({ force: true }).catch(() => undefined);
    await inspect.close();
  });

  // API.md: "a worker that dies mid-job has its job taken up by another. After the last
  // attempt the job is a dead letter: kept, reported to onDeadLetter". The worker keeps
  // BullMQ's maxStalledCount of 1, so a second worker death fails the job for good after
  // two runs of five, and onDeadLetter is never told.
  it('hands a job to another worker after its worker died twice mid-job (attempts 5), or at least reports the dead letter', async () => {
    const producer = receiver();
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await producer.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
    for (let death = 0; death < 2; death++) {
      const child = startHangingWorkerProcess(name);
      children.push(child);
      await nextMessage(child, (m) => m.started === keyOf(delivery.body));
      child.kill('SIGKILL');
    }
    const survivor = receiver();
    const outcome = deferred<string>();
    survivor.onAny(() => outcome.resolve('handled'));
    survivor.onDeadLetter(() => outcome.resolve('dead letter reported'));
    survivor.startWorker();
    const timedOut = new Promise<string>((resolve) => setTimeout(() => resolve('neither: silently failed as stalled'), 8000).unref());
    const seen = await Promise.race([outcome.promise, timedOut]);
    const job = await inspect.getJob(jobIdOf(keyOf(delivery.body)));
    expect({ seen, failedReason: job?.failedReason ?? null }).toEqual({ seen: 'handled', failedReason: null });
  }, 30_000);

  // API.md Shutdown: new deliveries are refused and handlers "already running (inline or
  // in a worker) are awaited". The worker is paused only after the receive side drained,
  // so while a receive is still under way the worker keeps taking new jobs.
  it('takes no new job in a worker once close() was called', async () => {
    const inner = new BullMQDeliveryQueue({ connection: { url: REDIS_URL! }, name, backoff: 0.05, lockDuration: 1 });
    const slowEnqueue = deferred();
    // A receive still under way when close() is called: its enqueue waits.
    const queue: DeliveryQueue = {
      enqueue: async (delivery, retentionMs) => {
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
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closing = webhooks.close({ timeout: 5 });

    // Another instance queues a delivery after this one began to close.
    const producer = receiver();
    const later = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
    expect((await producer.receive({ rawBody: later.body, headers: later.headers })).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    slowEnqueue.resolve();
    await underWay;
    await closing;
    expect(ran).not.toContain(keyOf(later.body));
  }, 20_000);
});
