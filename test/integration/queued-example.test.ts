import { startReceiver, startWorker } from '../../examples/queued-receiver';
import { signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';
import { deferred } from '../helpers/recorder';
import { assertRedisReachable, describeWithRedis } from '../helpers/redis';

describeWithRedis('examples/queued-receiver.ts')('examples/queued-receiver.ts', () => {
  beforeAll(() => assertRedisReachable());
  it('answers queued at once, and its worker handles the delivery, retrying the failing one', async () => {
    const lines: string[] = [];
    const bothHandled = deferred();
    const worker = startWorker((line) => {
      lines.push(line);
      if (lines.length === 2) bothHandled.resolve();
    });
    const receiver = await startReceiver();
    try {
      for (const event of ['dispatch.completed', 'dispatch.failed'] as const) {
        const reply = await send(receiver.url, signedDelivery({ event, secret: 'whsec_queued_example' }));
        expect(reply.json).toEqual({ success: true, queued: true });
      }
      await bothHandled.promise;
      expect(lines).toEqual(
        expect.arrayContaining([expect.stringMatching(/is live \(attempt 1/), expect.stringMatching(/failed, recorded on attempt 2$/)]),
      );
    } finally {
      await receiver.stop();
      await worker.stop();
    }
  });
});
