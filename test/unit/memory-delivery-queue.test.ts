import { createHash } from 'node:crypto';
import { MitpoWebhooks, type DeliveryContext } from '../../src';
import { MemoryDeliveryQueue, signedDelivery } from '../../src/testing';
import { SECRET } from '../helpers/recorder';

function queued(options: ConstructorParameters<typeof MemoryDeliveryQueue>[0] = {}) {
  const queue = new MemoryDeliveryQueue({ backoff: 0.001, ...options });
  const webhooks = new MitpoWebhooks({ secret: SECRET, queue });
  const deadLetters: Array<{ event: string | undefined; message: string }> = [];
  webhooks.onDeadLetter((event, _ctx, error) => deadLetters.push({ event: event?.event, message: error.message }));
  webhooks.startWorker();
  const receive = (delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET })) =>
    webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
  return { queue, webhooks, deadLetters, receive };
}

describe('MemoryDeliveryQueue (mitpo-webhooks/testing)', () => {
  it('answers queued as in production, and runs the handlers only in drain()', async () => {
    const { queue, webhooks, receive } = queued();
    const attempts: number[] = [];
    webhooks.on('dispatch.completed', (_event, ctx) => void attempts.push(ctx.attempt));
    expect(await receive()).toEqual({ status: 200, body: { success: true, queued: true } });
    expect(attempts).toEqual([]);
    await queue.drain();
    expect(attempts).toEqual([1]);
    expect(queue.deadLetters()).toEqual([]);
  });

  // Left over from an earlier note: a handler that awaited drain() waited for the drain running
  // it, so the test hung until Jest's timeout said nothing useful.
  it('refuses drain() from a handler it runs, which would wait for itself, with a TypeError that says so', async () => {
    const { queue, webhooks, receive } = queued();
    const refusals: unknown[] = [];
    webhooks.on('dispatch.completed', async () => {
      await queue.drain().catch((error: unknown) => void refusals.push(error));
    });
    await receive();
    await queue.drain();
    expect(refusals).toEqual([new TypeError('mitpo-webhooks/testing: drain() was called from a handler it runs, and would wait for itself; call it from the test')]);
    expect(queue.deadLetters()).toEqual([]);
    // The test's own drain() still works afterwards, and runs what came since.
    const ran: string[] = [];
    webhooks.on('dispatch.failed', (event) => void ran.push(event.event));
    await receive(signedDelivery({ event: 'dispatch.failed', secret: SECRET }));
    await queue.drain();
    expect(ran).toEqual(['dispatch.failed']);
  });

  // Found by a hunt: the queue did not say when it took the delivery, so a drain more than
  // ten minutes after the receipt told the handlers the drain's time as ctx.receivedAt.
  it('tells the handlers when the delivery was received, however long before the drain', async () => {
    jest.useFakeTimers({ now: new Date('2026-03-01T00:00:00Z') });
    try {
      const { queue, webhooks, receive } = queued();
      const received: Date[] = [];
      webhooks.on('dispatch.completed', (_event, ctx) => void received.push(ctx.receivedAt));
      await receive();
      jest.setSystemTime(new Date('2026-03-01T00:15:00Z'));
      await queue.drain();
      expect(received).toEqual([new Date('2026-03-01T00:00:00Z')]);
    } finally {
      jest.useRealTimers();
    }
  });

  // Found in review: the queue's time of taking it was read off the real clock, so a receiver
  // with a `now` of its own told the handlers the real time instead.
  it("tells the handlers the receive time on the receiver's own clock (its now option)", async () => {
    const queue = new MemoryDeliveryQueue({ backoff: 0 });
    const fixed = Date.parse('2025-01-15T12:00:00Z');
    const webhooks = new MitpoWebhooks({ secret: SECRET, queue, now: () => fixed });
    const received: Date[] = [];
    webhooks.on('dispatch.completed', (_event, ctx) => void received.push(ctx.receivedAt));
    webhooks.startWorker();
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp: new Date(fixed), sentAt: new Date(fixed) });
    expect((await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
    await queue.drain();
    expect(received).toEqual([new Date(fixed)]);
  });

  it('answers a copy duplicate while queued and once handled, and runs it once', async () => {
    const { queue, webhooks, receive } = queued();
    let runs = 0;
    webhooks.onAny(() => void (runs += 1));
    const delivery = signedDelivery({ event: 'connection.active', secret: SECRET });
    await receive(delivery);
    expect((await receive(delivery)).body).toEqual({ success: true, duplicate: true });
    await queue.drain();
    expect((await receive(delivery)).body).toEqual({ success: true, duplicate: true });
    await queue.drain();
    expect(runs).toBe(1);
  });

  it('retries a failed run after its backoff, ctx.attempt counting each run', async () => {
    const { queue, webhooks, receive, deadLetters } = queued({ attempts: 3 });
    const contexts: DeliveryContext[] = [];
    webhooks.on('dispatch.completed', (_event, ctx) => {
      contexts.push(ctx);
      if (ctx.attempt < 3) throw new Error(`try ${ctx.attempt} failed`);
    });
    await receive();
    await queue.drain();
    expect(contexts.map((ctx) => ctx.attempt)).toEqual([1, 2, 3]);
    expect(new Set(contexts.map((ctx) => ctx.deliveryKey)).size).toBe(1);
    expect(deadLetters).toEqual([]);
  });

  // Found by a hunt: with the clock frozen and timers real (`vi.setSystemTime()` alone,
  // `jest.spyOn(Date, 'now')`, node:test's mock of Date), a retry never became due, and
  // drain() waited for it forever.
  it('retries after the backoff with the clock frozen and timers real', async () => {
    const { queue, webhooks, receive } = queued({ attempts: 3, backoff: 0.01 });
    const attempts: number[] = [];
    webhooks.on('dispatch.completed', (_event, ctx) => {
      attempts.push(ctx.attempt);
      if (ctx.attempt === 1) throw new Error('first try failed');
    });
    await receive();
    const frozen = jest.spyOn(Date, 'now').mockReturnValue(Date.now());
    try {
      await queue.drain();
    } finally {
      frozen.mockRestore();
    }
    expect(attempts).toEqual([1, 2]);
  });

  // Found by a hunt: a second drain() while one ran resolved with a delivery still running,
  // and two drains ran deliveries at once, where they run one at a time.
  it('resolves a drain() called while another runs only once every delivery ran, one at a time', async () => {
    const { queue, webhooks, receive } = queued();
    let running = 0;
    let most = 0;
    let handled = 0;
    webhooks.on('dispatch.completed', async () => {
      most = Math.max(most, (running += 1));
      await new Promise((resolve) => setImmediate(resolve));
      running -= 1;
      handled += 1;
    });
    for (let i = 0; i < 3; i += 1) await receive();
    const first = queue.drain();
    await queue.drain();
    expect(handled).toBe(3);
    expect(most).toBe(1);
    await first;
  });

  it('keeps a delivery that failed every attempt as a dead letter, told to onDeadLetter once', async () => {
    const { queue, webhooks, receive, deadLetters } = queued({ attempts: 2 });
    webhooks.on('dispatch.failed', () => {
      throw new Error('the database is down');
    });
    await receive(signedDelivery({ event: 'dispatch.failed', secret: SECRET }));
    await queue.drain();
    expect(deadLetters).toEqual([{ event: 'dispatch.failed', message: expect.stringContaining('the database is down') }]);
    const [letter] = queue.deadLetters();
    expect(letter).toMatchObject({ attempts: 2, event: { event: 'dispatch.failed' } });
    expect(letter!.error.message).toContain('the database is down');
    expect(letter!.deliveryKey).toMatch(/^[0-9a-f]{64}$/);
  });

  it('keeps an authentic delivery the schema refused as a dead letter, answered 400, and tells onDeadLetter once, as on BullMQ', async () => {
    const { queue, receive, deadLetters } = queued();
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 42 } as never });
    expect((await receive(delivery)).status).toBe(400);
    await queue.drain();
    expect(deadLetters).toEqual([{ event: undefined, message: expect.stringContaining('dispatch_id') }]);
    const [letter] = queue.deadLetters();
    expect(letter).toMatchObject({ attempts: 1, error: { cause: { code: 'invalid_payload' } } });
    const refusal = (letter!.error as Error & { cause: Error & { cause?: { issues?: unknown[] } } }).cause;
    expect(refusal.cause?.issues).toEqual(expect.arrayContaining([expect.objectContaining({ path: ['data', 'dispatch_id'] })]));
  });

  it('needs a worker to drain, and refuses options BullMQ would refuse', async () => {
    await expect(new MemoryDeliveryQueue().drain()).rejects.toThrow(/startWorker/);
    expect(() => new MemoryDeliveryQueue({ attempts: 0 })).toThrow(TypeError);
    expect(() => new MemoryDeliveryQueue({ backoff: 10_000_000 })).toThrow(/seconds/);
  });

  it.each([0, -1, 1.5, '2', Number.NaN])('refuses a worker concurrency of %p, as BullMQ and Postgres do, where a test passed with a setting production refuses', (concurrency) => {
    const webhooks = new MitpoWebhooks({ secret: SECRET, queue: new MemoryDeliveryQueue() });
    expect(() => webhooks.startWorker({ concurrency: concurrency as number })).toThrow(/mitpo-webhooks: startWorker\(\) concurrency must be a whole number from 1/);
  });
});

describe('what a queue worker runs', () => {
  const old = () => signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp: Math.floor(Date.now() / 1000) - 30 * 86_400 });
  const stored = (delivery: ReturnType<typeof signedDelivery>, extra: object = {}) => ({
    deliveryKey: createHash('sha256').update(delivery.body).digest('hex'),
    rawBody: Buffer.from(delivery.body),
    headers: Object.fromEntries(Object.entries(delivery.headers).map(([name, value]) => [name.toLowerCase(), value])),
    receivedAt: Date.now(),
    ...extra,
  });

  it('does not run a genuine event older than maxEventAge put back in the store: a dead letter, event_too_old', async () => {
    const queue = new MemoryDeliveryQueue();
    const webhooks = new MitpoWebhooks({ secret: SECRET, queue, maxEventAge: 86_400 });
    const ran = jest.fn();
    webhooks.onAny(ran);
    webhooks.startWorker();
    await queue.enqueue(stored(old()), 1000);
    await queue.drain();
    expect(ran).not.toHaveBeenCalled();
    expect(queue.deadLetters()).toEqual([expect.objectContaining({ attempts: 1, error: expect.objectContaining({ cause: expect.objectContaining({ code: 'event_too_old' }) }) })]);
  });

  it('runs it when an operator retried its dead letter', async () => {
    const queue = new MemoryDeliveryQueue();
    const webhooks = new MitpoWebhooks({ secret: SECRET, queue, maxEventAge: 86_400 });
    const ran = jest.fn();
    webhooks.onAny(ran);
    webhooks.startWorker();
    await queue.enqueue(stored(old(), { retriedByOperator: true }), 1000);
    await queue.drain();
    expect(ran).toHaveBeenCalledTimes(1);
  });

  it('retries a run whose deliveryKey option threw (our side), rather than making it a dead letter at once', async () => {
    const queue = new MemoryDeliveryQueue({ attempts: 3, backoff: 0.001 });
    let calls = 0;
    const webhooks = new MitpoWebhooks({
      secret: SECRET,
      queue,
      deliveryKey: (event) => {
        calls += 1;
        if (calls === 2) throw new Error('idempotency database down');
        return `${event.event}:${(event.data as { dispatch_id?: string }).dispatch_id}`;
      },
    });
    const ran = jest.fn();
    webhooks.onAny(ran);
    webhooks.startWorker();
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    expect((await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
    await queue.drain();
    expect(ran).toHaveBeenCalledTimes(1);
    expect(queue.deadLetters()).toEqual([]);
  });
});

describe('verify()', () => {
  it('computes no delivery key: a deliveryKey option that throws does not touch it', async () => {
    const deliveryKey = jest.fn(() => {
      throw new Error('idempotency database down');
    });
    const webhooks = new MitpoWebhooks({ secret: SECRET, deliveryKey });
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    await expect(webhooks.verify({ rawBody: delivery.body, headers: delivery.headers })).resolves.toMatchObject({ event: 'dispatch.completed' });
    expect(deliveryKey).not.toHaveBeenCalled();
  });
});

describe("a worker's logs", () => {
  it('records each failed run at error with its attempt and error, and the dead letter at error', async () => {
    const records: Array<{ level: string; record: Record<string, unknown> }> = [];
    const at = (level: string) => (record: object) => void records.push({ level, record: record as Record<string, unknown> });
    const queue = new MemoryDeliveryQueue({ attempts: 2, backoff: 0.001 });
    const webhooks = new MitpoWebhooks({ secret: SECRET, queue, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } });
    webhooks.onAny(() => {
      throw new Error('the database is down');
    });
    webhooks.startWorker();
    const delivery = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
    await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
    await queue.drain();
    expect(records.map(({ level, record }) => [level, record.code, record.attempt, record.event])).toEqual([
      ['error', 'handler_failed', 1, 'dispatch.failed'],
      ['error', 'handler_failed', 2, 'dispatch.failed'],
      ['error', 'dead_letter', 2, 'dispatch.failed'],
    ]);
    expect((records[0]!.record.err as Error).message).toContain('the database is down');
  });
});

describe('a deliveryKey of your own that is not unique', () => {
  it('answers the second, different delivery duplicate and warns that the key collided; a copy is a plain duplicate', async () => {
    const warnings: Array<Record<string, unknown>> = [];
    const ignore = () => undefined;
    const queue = new MemoryDeliveryQueue();
    const webhooks = new MitpoWebhooks({
      secret: SECRET,
      queue,
      logger: { debug: ignore, info: ignore, error: ignore, warn: (record: object) => void warnings.push(record as Record<string, unknown>) },
      deliveryKey: (event) => String((event.data as { dispatch_id?: string }).dispatch_id),
    });
    const first = signedDelivery({ event: 'dispatch.accepted', secret: SECRET, data: { dispatch_id: 'dsp_1', channel: 'meta_ads', status: 'accepted' } });
    const other = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 'dsp_1', channel: 'meta_ads', status: 'completed' } });
    const receive = (delivery: typeof first) => webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
    expect((await receive(first)).body).toEqual({ success: true, queued: true });
    expect((await receive(first)).body).toEqual({ success: true, duplicate: true });
    expect(warnings).toEqual([]);
    expect((await receive(other)).body).toEqual({ success: true, duplicate: true });
    expect(warnings).toEqual([expect.objectContaining({ code: 'delivery_key_collision', deliveryKey: 'dsp_1', event: 'dispatch.completed' })]);
  });

  describe('a deliveryKey of your own, and a delivery an older version refused (a rolling deploy)', () => {
    const byDispatch = (event: { event: string; data: unknown }) => `${event.event}|${String((event.data as { dispatch_id?: string }).dispatch_id)}`;

    /** What a receiver of an older version, whose schema refused the payload, kept: the bytes under their hash. */
    function keptByOlderVersion(queue: MemoryDeliveryQueue, delivery: ReturnType<typeof signedDelivery>) {
      const headers = Object.fromEntries(Object.entries(delivery.headers).map(([name, value]) => [name.toLowerCase(), value]));
      const refused = { code: 'invalid_payload', message: 'Event payload does not match the dispatch.completed schema' };
      const deliveryKey = createHash('sha256').update(delivery.body).digest('hex');
      return queue.enqueue({ deliveryKey, rawBody: Buffer.from(delivery.body), headers, receivedAt: Date.now(), refused }, 600_000);
    }

    function setUp() {
      const queue = new MemoryDeliveryQueue({ backoff: 0.001 });
      const webhooks = new MitpoWebhooks({ secret: SECRET, queue, deliveryKey: byDispatch });
      const keys: string[] = [];
      webhooks.onAny((_event, ctx) => void keys.push(ctx.deliveryKey));
      webhooks.startWorker();
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 'dsp_2', channel: 'meta_ads', status: 'completed' } });
      const receive = () => webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
      return { queue, keys, delivery, receive };
    }

    it('runs it once when its kept copy runs first: the copy moves to its own key, and MITPO\'s retry is a duplicate', async () => {
      const { queue, keys, delivery, receive } = setUp();
      expect(await keptByOlderVersion(queue, delivery)).toBe('queued');
      await queue.drain();
      expect(keys).toEqual(['dispatch.completed|dsp_2']);
      expect((await receive()).body).toEqual({ success: true, duplicate: true });
      await queue.drain();
      expect(keys).toEqual(['dispatch.completed|dsp_2']);
      expect(queue.deadLetters()).toEqual([]);
    });

    it('runs it once when MITPO\'s retry was queued first: the kept copy is then a duplicate', async () => {
      const { queue, keys, delivery, receive } = setUp();
      expect((await receive()).body).toEqual({ success: true, queued: true });
      expect(await keptByOlderVersion(queue, delivery)).toBe('queued');
      await queue.drain();
      expect(keys).toEqual(['dispatch.completed|dsp_2']);
      expect(queue.deadLetters()).toEqual([]);
    });
  });

  it('removes a stored delivery that was tampered with, unrun and never a dead letter', async () => {
    const { queue, webhooks, deadLetters } = queued();
    let ran = 0;
    webhooks.onAny(() => void (ran += 1));
    const genuine = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    // What an attacker with write access to the store could put there: bytes MITPO did not sign.
    const forged = genuine.body.replace('"completed"', '"failed"');
    await queue.enqueue(
      { deliveryKey: createHash('sha256').update(forged).digest('hex'), rawBody: Buffer.from(forged), headers: { 'content-type': 'application/json', 'x-mitpo-signature': genuine.headers['X-MITPO-Signature']! }, receivedAt: Date.now() },
      60_000,
    );
    await queue.drain();
    expect(ran).toBe(0);
    expect(deadLetters).toEqual([]);
    expect(queue.deadLetters()).toEqual([]);
    expect(await queue.depth()).toEqual({ waiting: 0, active: 0, delayed: 0, failed: 0 });
  });

  it("closes its worker with the receiver: drain() then needs a new one", async () => {
    const { queue, webhooks, receive } = queued();
    await receive();
    await webhooks.close({ timeout: 1 });
    await queue.close();
    await expect(queue.drain()).rejects.toThrow(/needs a worker/);
  });

  it('answers 500 when an ordering key of your own returns something other than a string, and runs no handler', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET, ordering: { key: () => 42 as unknown as string } });
    let ran = 0;
    webhooks.onAny(() => void (ran += 1));
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const answer = await webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
    expect(answer.status).toBe(500);
    expect(answer.body).toMatchObject({ error: { code: 'internal_error' } });
    expect(ran).toBe(0);
  });
});

