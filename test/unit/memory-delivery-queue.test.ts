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

  it('keeps an authentic delivery the schema refused, with its issues, answered 400', async () => {
    const { queue, receive } = queued();
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET, data: { dispatch_id: 42 } as never });
    expect((await receive(delivery)).status).toBe(400);
    const [letter] = queue.deadLetters();
    expect(letter).toMatchObject({ attempts: 0, error: { code: 'invalid_payload' } });
    expect((letter!.error as Error & { issues?: unknown[] }).issues).toEqual(expect.arrayContaining([expect.objectContaining({ path: ['data', 'dispatch_id'] })]));
  });

  it('needs a worker to drain, and refuses options BullMQ would refuse', async () => {
    await expect(new MemoryDeliveryQueue().drain()).rejects.toThrow(/startWorker/);
    expect(() => new MemoryDeliveryQueue({ attempts: 0 })).toThrow(TypeError);
    expect(() => new MemoryDeliveryQueue({ backoff: 10_000_000 })).toThrow(/seconds/);
  });
});
