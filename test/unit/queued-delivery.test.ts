import { FinalDeliveryFailure, MitpoWebhooks, type DeliveryContext, type DeliveryQueue, type QueuedDelivery, type QueuedDeliveryProcessor, type QueuedRun } from '../../src';
import { signedDelivery } from '../../src/testing';
import { SECRET } from '../helpers/recorder';

/** A queue in memory: enough to drive the receiver's and the worker's side of queued processing without Redis. */
class MemoryQueue implements DeliveryQueue {
  readonly jobs = new Map<string, QueuedDelivery>();
  processor: QueuedDeliveryProcessor | undefined;
  failNext = false;
  async enqueue(delivery: QueuedDelivery): Promise<'queued' | 'duplicate'> {
    if (this.failNext) throw new Error('ECONNREFUSED');
    if (this.jobs.has(delivery.deliveryKey)) return 'duplicate';
    this.jobs.set(delivery.deliveryKey, delivery);
    return 'queued';
  }
  startWorker(processor: QueuedDeliveryProcessor) {
    this.processor = processor;
    return { close: async () => undefined };
  }
  async close() {}
  run(delivery: QueuedDelivery, attempt = 1, lastAttempt = false, exhausted = false, hooks: Pick<QueuedRun, 'complete' | 'undo'> = {}) {
    return this.processor!({ delivery, attempt, lastAttempt, ...(exhausted && { exhausted }), ...hooks });
  }
}

function setUp() {
  const queue = new MemoryQueue();
  const webhooks = new MitpoWebhooks({ secret: SECRET, queue });
  const runs: number[] = [];
  const deadLetters: Array<{ event?: string; code?: string; message: string }> = [];
  webhooks.onDeadLetter((event, _ctx, error) => deadLetters.push({ event: event?.event, code: (error as { code?: string }).code, message: error.message }));
  webhooks.startWorker({ concurrency: 2 });
  return { queue, webhooks, runs, deadLetters };
}

async function queued(webhooks: MitpoWebhooks, queue: MemoryQueue, delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET })) {
  const reply = await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
  return { reply, job: [...queue.jobs.values()].at(-1)! };
}

describe('queued processing, the pipeline side', () => {
  it('queues only verified deliveries, answering queued, then duplicate', async () => {
    const { queue, webhooks } = setUp();
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })).body).toEqual({ success: true, queued: true });
    expect((await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })).body).toEqual({ success: true, duplicate: true });
    const forged = signedDelivery({ event: 'dispatch.completed', secret: 'whsec_attacker' });
    expect((await webhooks.receive({ rawBody: forged.body, headers: forged.headers })).status).toBe(401);
    expect(queue.jobs.size).toBe(1);
  });

  it('answers 503 queue_unavailable when the queue throws', async () => {
    const { queue, webhooks } = setUp();
    queue.failNext = true;
    const { reply } = await queued(webhooks, queue);
    expect(reply).toMatchObject({ status: 503, body: { error: { code: 'queue_unavailable' } } });
  });

  it('runs the handlers in the worker with ctx.attempt, and fails the run (to be retried) when one fails', async () => {
    const { queue, webhooks } = setUp();
    const attempts: number[] = [];
    webhooks.onAny((_event, ctx) => {
      attempts.push(ctx.attempt);
      if (ctx.attempt === 1) throw new Error('db down');
    });
    const { job } = await queued(webhooks, queue);
    await expect(queue.run(job, 1)).rejects.toThrow(/A handler failed.*db down/);
    await queue.run(job, 2);
    expect(attempts).toEqual([1, 2]);
  });

  it('reports a dead letter after the last attempt, with the event', async () => {
    const { queue, webhooks, deadLetters } = setUp();
    webhooks.onAny(() => {
      throw new Error('still down');
    });
    const { job } = await queued(webhooks, queue);
    await expect(queue.run(job, 1, false)).rejects.toThrow();
    expect(deadLetters).toEqual([]);
    await expect(queue.run(job, 3, true)).rejects.toThrow();
    expect(deadLetters).toEqual([{ event: 'dispatch.completed', code: 'handler_failed', message: expect.stringContaining('still down') }]);
  });

  it('tells onDeadLetter workers_died in error.code for a delivery whose every attempt started and none finished', async () => {
    const { queue, webhooks, deadLetters } = setUp();
    const ran = jest.fn();
    webhooks.onAny(ran);
    const { job } = await queued(webhooks, queue);
    await expect(queue.run(job, 4, true, true)).rejects.toMatchObject({ name: 'WorkersDied', code: 'workers_died' });
    expect(deadLetters).toEqual([{ event: 'dispatch.completed', code: 'workers_died', message: expect.stringContaining('the workers running it died') }]);
    expect(ran).not.toHaveBeenCalled();
  });

  it('keeps a run whose completion no attempt can help (a FinalDeliveryFailure) as a dead letter at once, its code told to onDeadLetter', async () => {
    const { queue, webhooks, deadLetters } = setUp();
    const ran = jest.fn();
    webhooks.onAny(ran);
    const { job } = await queued(webhooks, queue);
    const ended = Object.assign(new FinalDeliveryFailure('the handlers ended the transaction'), { code: 'transaction_ended' });
    await expect(queue.run(job, 1, false, false, { complete: () => Promise.reject(ended) })).rejects.toBe(ended);
    expect(ran).toHaveBeenCalledTimes(1);
    expect(deadLetters).toEqual([{ event: 'dispatch.completed', code: 'transaction_ended', message: 'the handlers ended the transaction' }]);
  });

  it('undoes the writes of failed handlers through the queue, and keeps the run as a dead letter at once when they cannot be undone', async () => {
    const { queue, webhooks, deadLetters } = setUp();
    webhooks.onAny(() => {
      throw new Error('a later step failed');
    });
    const { job } = await queued(webhooks, queue);
    const undo = jest.fn(() => Promise.resolve());
    await expect(queue.run(job, 1, false, false, { undo })).rejects.toMatchObject({ code: 'handler_failed' });
    expect(undo).toHaveBeenCalledTimes(1);
    expect(deadLetters).toEqual([]);
    const ended = Object.assign(new FinalDeliveryFailure('the handlers ended the transaction'), { code: 'transaction_ended' });
    const dead = queue.run(job, 2, false, false, { undo: () => Promise.reject(ended) });
    await expect(dead).rejects.toBeInstanceOf(FinalDeliveryFailure);
    // The handlers' own errors are kept with it, as for any handler_failed run.
    const error = (await dead.catch((e: unknown) => e)) as Error;
    expect((error.cause as Error).message).toBe('a later step failed');
    expect(deadLetters).toEqual([
      { event: 'dispatch.completed', code: 'transaction_ended', message: "the handlers ended the transaction. The handlers' errors: a later step failed" },
    ]);
  });

  describe('a worker believes only the signature', () => {
    function tamperSetUp() {
      const warnings: Array<{ record: object; message: string }> = [];
      const logger = { debug() {}, info() {}, error() {}, warn: (record: object, message: string) => warnings.push({ record, message }) };
      const queue = new MemoryQueue();
      const webhooks = new MitpoWebhooks({ secret: SECRET, queue, logger });
      const deadLetters: unknown[] = [];
      webhooks.onDeadLetter((event) => deadLetters.push(event));
      const contexts: DeliveryContext[] = [];
      webhooks.onAny((_event, ctx) => void contexts.push(ctx));
      webhooks.startWorker();
      return { queue, webhooks, warnings, deadLetters, contexts };
    }

    it.each([
      ['a body altered in storage', (job: QueuedDelivery) => ({ ...job, rawBody: Buffer.from(job.rawBody.toString().replace('completed', 'failed')) })],
      ['a forged job signed with another secret', (job: QueuedDelivery) => {
        const forged = signedDelivery({ event: 'dispatch.completed', secret: 'whsec_attacker' });
        return { ...job, rawBody: Buffer.from(forged.body), headers: { ...job.headers, 'x-mitpo-signature': forged.headers['X-MITPO-Signature']! } };
      }],
      ['an altered delivery key (to defeat the idempotency records)', (job: QueuedDelivery) => ({ ...job, deliveryKey: 'attacker-chosen-key' })],
      ['an X-MITPO-Event header changed in storage', (job: QueuedDelivery) => ({ ...job, headers: { ...job.headers, 'x-mitpo-event': 'dispatch.failed' } })],
    ])('refuses %s as tampered: no handler, no dead letter, a warning', async (_name, tamper) => {
      const { queue, webhooks, warnings, deadLetters, contexts } = tamperSetUp();
      const { job } = await queued(webhooks, queue);
      await expect(queue.run(tamper(job))).rejects.toMatchObject({ name: 'TamperedDelivery', code: 'tampered_delivery' });
      expect(contexts).toEqual([]);
      expect(deadLetters).toEqual([]);
      expect(warnings).toEqual([{ record: expect.objectContaining({ code: 'tampered_delivery' }), message: expect.stringContaining('tampered with') }]);
    });

    it('refuses a genuine delivery re-added under an id its key does not give', async () => {
      const { queue, webhooks, contexts } = tamperSetUp();
      (queue as MemoryQueue & { idOf(key: string): string }).idOf = (key) => `id-${key}`;
      const { job } = await queued(webhooks, queue);
      await expect(queue.processor!({ delivery: job, storedAs: 'id-someone-else', attempt: 1, lastAttempt: false })).rejects.toMatchObject({ name: 'TamperedDelivery' });
      await queue.processor!({ delivery: job, storedAs: `id-${job.deliveryKey}`, attempt: 1, lastAttempt: false });
      expect(contexts).toHaveLength(1);
    });

    it('builds ctx from what was verified: the recomputed key, the four kept headers, a receive time no later than the queue took it', async () => {
      const { queue, webhooks, contexts } = tamperSetUp();
      const { job } = await queued(webhooks, queue);
      const injected = { ...job, headers: { ...job.headers, authorization: 'Bearer stolen', 'x-forwarded-for': '6.6.6.6' }, receivedAt: Date.UTC(2099, 0, 1) };
      await queue.processor!({ delivery: injected, queuedAt: job.receivedAt, attempt: 1, lastAttempt: false });
      const [ctx] = contexts;
      expect(Object.keys(ctx!.headers).sort()).toEqual(['content-type', 'x-mitpo-event', 'x-mitpo-signature', 'x-mitpo-timestamp']);
      expect(ctx!.deliveryKey).toBe(job.deliveryKey);
      expect(ctx!.receivedAt.getTime()).toBe(job.receivedAt);
    });

    it('believes a stored receive time only when it could be true: not 1970, not after the queue took the job', async () => {
      const { queue, webhooks, contexts } = tamperSetUp();
      const { job } = await queued(webhooks, queue);
      const queuedAt = job.receivedAt + 5;
      for (const receivedAt of [0, queuedAt + 60_000, job.receivedAt]) {
        await queue.processor!({ delivery: { ...job, receivedAt }, queuedAt, attempt: 1, lastAttempt: false });
      }
      expect(contexts.map((ctx) => ctx.receivedAt.getTime())).toEqual([queuedAt, queuedAt, job.receivedAt]);
    });
  });

  it('keeps an authentic delivery refused as invalid_payload, and validates it again when it is run', async () => {
    const { queue, webhooks, deadLetters } = setUp();
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 7 } as never });
    const { reply, job } = await queued(webhooks, queue, delivery);
    expect(reply.status).toBe(400);
    expect(job.refused).toMatchObject({ code: 'invalid_payload', issues: expect.arrayContaining([expect.objectContaining({ path: ['data', 'dispatch_id'] })]) });
    await expect(queue.run(job)).rejects.toMatchObject({ name: 'FinalDeliveryFailure', cause: { code: 'invalid_payload' } });
    expect(deadLetters.map((d) => d.code)).toEqual(['invalid_payload']);
  });

  it('logs, with its code, a refused authentic delivery the queue could not keep, and still answers 400', async () => {
    const queue = new MemoryQueue();
    const errors: Array<{ record: Record<string, unknown>; message: string }> = [];
    const logger = { debug() {}, info() {}, warn() {}, error: (record: Record<string, unknown>, message: string) => void errors.push({ record, message }) };
    const webhooks = new MitpoWebhooks({ secret: SECRET, queue, logger });
    queue.failNext = true;
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 7 } as never });
    expect((await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(400);
    expect(errors).toContainEqual({
      record: expect.objectContaining({ code: 'queue_unavailable', err: expect.objectContaining({ message: 'ECONNREFUSED' }) }),
      message: 'mitpo-webhooks: the queue could not keep a refused authentic delivery as a dead letter',
    });
  });

  it('gives onDeadLetter the bytes as a Buffer, whatever Uint8Array the queue handed back', async () => {
    const queue = new MemoryQueue();
    const webhooks = new MitpoWebhooks({ secret: SECRET, queue });
    const bodies: unknown[] = [];
    webhooks.onDeadLetter((_event, ctx) => void bodies.push(ctx.rawBody));
    webhooks.startWorker();
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 7 } as never });
    const { job } = await queued(webhooks, queue, delivery);
    // A queue of the app's own may store and return the bytes as a plain Uint8Array.
    const handedBack = { ...job, rawBody: new Uint8Array(job.rawBody) };
    await expect(queue.run(handedBack)).rejects.toMatchObject({ name: 'FinalDeliveryFailure' });
    expect(bodies).toHaveLength(1);
    expect(Buffer.isBuffer(bodies[0])).toBe(true);
    expect((bodies[0] as Buffer).toString('utf8')).toBe(delivery.body);
  });

  it('does not freshness-check a queued delivery again: a retry hours later still runs', async () => {
    let now = Date.now();
    const queue = new MemoryQueue();
    const webhooks = new MitpoWebhooks({ secret: SECRET, queue, now: () => now });
    const ran = jest.fn();
    webhooks.onAny(ran);
    webhooks.startWorker();
    const { job } = await queued(webhooks, queue);
    now += 6 * 3600 * 1000;
    await queue.run(job, 4);
    expect(ran).toHaveBeenCalledTimes(1);
  });

  describe('a completion that fails after the handlers succeeded', () => {
    function completionSetUp({ ordering = false } = {}) {
      const errors: Array<{ record: { code?: string; err?: Error }; message: string }> = [];
      const logger = { debug() {}, info() {}, warn() {}, error: (record: object, message: string) => errors.push({ record, message }) };
      const queue = Object.assign(new MemoryQueue(), { keepsOrder: ordering });
      const webhooks = new MitpoWebhooks({ secret: SECRET, queue, logger, ordering });
      webhooks.startWorker();
      return { queue, webhooks, errors };
    }
    const refused = () => Promise.reject(new Error('READONLY You can\'t write against a read only replica'));

    it('from a queue without a transaction (BullMQ recording the applied position): says the handlers ran, not that nothing was applied', async () => {
      const { queue, webhooks, errors } = completionSetUp();
      const { job } = await queued(webhooks, queue);
      const run = queue.processor!({ delivery: job, attempt: 1, lastAttempt: false, complete: refused });
      await expect(run).rejects.toThrow('The handlers succeeded, but the queue could not record their completion: READONLY');
      expect(errors).toEqual([
        {
          record: expect.objectContaining({ code: 'commit_failed' }),
          message: "mitpo-webhooks: a queued delivery's handlers succeeded but its completion could not be recorded (attempt 1); the run counts as failed",
        },
      ]);
    });

    it('on a stale event (ordering), where no handler ran: says the event was skipped, not that handlers succeeded', async () => {
      const { queue, webhooks, errors } = completionSetUp({ ordering: true });
      const handler = jest.fn();
      webhooks.onAny(handler);
      const { job } = await queued(webhooks, queue);
      const db = { query: async () => ({ rows: [], rowCount: 0 }) };
      const stale = { stale: Number.MAX_SAFE_INTEGER };
      await expect(queue.processor!({ delivery: job, attempt: 1, lastAttempt: false, db, takeTurn: async () => stale, complete: refused })).rejects.toThrow(
        'The event was skipped as stale, but its done mark could not be committed: READONLY',
      );
      await expect(queue.processor!({ delivery: job, attempt: 2, lastAttempt: false, takeTurn: async () => stale, complete: refused })).rejects.toThrow(
        'The event was skipped as stale, but the queue could not record it: READONLY',
      );
      expect(handler).not.toHaveBeenCalled();
      expect(errors.map((e) => e.message)).toEqual([
        'mitpo-webhooks: a queued delivery skipped as stale could not be marked done (attempt 1); the run counts as failed',
        'mitpo-webhooks: a queued delivery skipped as stale could not be recorded as done (attempt 2); the run counts as failed',
      ]);
    });

    // onStale is told after the done mark committed, and onDeadLetter inside a run whose writes are
    // rolled back: a ctx.db in either would write outside the exactly-once transaction, or not at all.
    it('gives onStale and onDeadLetter no ctx.db, which only the handlers write through', async () => {
      const { queue, webhooks } = completionSetUp({ ordering: true });
      const seen: string[] = [];
      webhooks.onStale((_event, ctx) => void seen.push(`onStale db ${'db' in ctx}`));
      webhooks.onDeadLetter((_event, ctx) => void seen.push(`onDeadLetter db ${'db' in ctx}`));
      webhooks.onAny(() => {
        throw new Error('down');
      });
      const db = { query: async () => ({ rows: [], rowCount: 0 }) };
      const { job } = await queued(webhooks, queue);
      const complete = async () => undefined;
      await queue.processor!({ delivery: job, attempt: 1, lastAttempt: false, db, takeTurn: async () => ({ stale: Number.MAX_SAFE_INTEGER }), complete });
      await expect(queue.processor!({ delivery: job, attempt: 2, lastAttempt: true, db, takeTurn: async () => 'taken' as const, complete })).rejects.toThrow('down');
      expect(seen).toEqual(['onStale db false', 'onDeadLetter db false']);
    });

    it('from a queue whose handlers write in its transaction (Postgres, ctx.db): says none of their writes were applied', async () => {
      const { queue, webhooks, errors } = completionSetUp();
      const { job } = await queued(webhooks, queue);
      const db = { query: async () => ({ rows: [], rowCount: 0 }) };
      const run = queue.processor!({ delivery: job, attempt: 1, lastAttempt: false, db, complete: refused });
      await expect(run).rejects.toThrow('The handlers succeeded, but their writes could not be committed with the done mark: READONLY');
      expect(errors.map((e) => e.message)).toEqual([
        "mitpo-webhooks: a queued delivery's transaction could not commit (attempt 1); none of its writes were applied",
      ]);
    });
  });

  it('retries a run whose secret could not be resolved, until the last attempt', async () => {
    let vaultUp = true;
    const queue = new MemoryQueue();
    const webhooks = new MitpoWebhooks({
      secret: async () => {
        if (!vaultUp) throw new Error('vault sealed');
        return SECRET;
      },
      secretCacheTtl: 0,
      queue,
    });
    webhooks.startWorker();
    const { job } = await queued(webhooks, queue);
    vaultUp = false;
    await expect(queue.run(job, 1, false)).rejects.toMatchObject({ code: 'secret_unavailable' });
    await expect(queue.run(job, 1, false)).rejects.toMatchObject({ code: 'secret_unavailable' });
    await expect(queue.run(job, 5, true)).rejects.toMatchObject({ name: 'FinalDeliveryFailure', cause: { code: 'secret_unavailable' } });
  });
});

describe('queued processing with a deliveryKey of your own', () => {
  it('queues under that key, so a byte-different copy of the same event is a duplicate, and hands it to the handlers', async () => {
    const queue = new MemoryQueue();
    const webhooks = new MitpoWebhooks({ secret: SECRET, queue, deliveryKey: (event) => `${event.event}:${event.timestamp}` });
    const keys: string[] = [];
    webhooks.onAny((_event, ctx) => void keys.push(ctx.deliveryKey));
    webhooks.startWorker();
    const timestamp = Math.floor(Date.now() / 1000) - 10;
    const data = { dispatch_id: 'dsp_same', channel: 'meta_ads', status: 'completed' };
    const first = signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp, data });
    const reordered = signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp, data: { ...data, extra: 1 } });
    expect((await webhooks.receive({ rawBody: first.body, headers: first.headers })).body).toEqual({ success: true, queued: true });
    expect((await webhooks.receive({ rawBody: reordered.body, headers: reordered.headers })).body).toEqual({ success: true, duplicate: true });
    const [job] = [...queue.jobs.values()];
    expect(job!.deliveryKey).toMatch(/^dispatch\.completed:/);
    await queue.run(job!);
    expect(keys).toEqual([job!.deliveryKey]);
  });
});
