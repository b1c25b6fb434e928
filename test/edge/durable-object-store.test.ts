import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';
import { SECRET } from './checks-app';
import { describeRuntime, serve, type Served } from './runtimes';

// examples/cloudflare-durable-object-store.ts in workerd (through miniflare):
// the store every isolate of a Worker shares, where MemoryReplayStore is one isolate's.
describe('the Durable Object replay store example', () => {
  describeRuntime('workerd', (runtime) => {
    let served: Served;
    beforeAll(async () => {
      served = await serve(runtime, path.join(__dirname, 'durable-object-worker.ts'));
    }, 90_000);
    afterAll(() => served?.stop());

    const delivery = (event: 'dispatch.completed' | 'dispatch.failed', dispatchId: string) =>
      signedDelivery({ event, secret: SECRET, data: { dispatch_id: dispatchId, channel: 'meta_ads', status: event === 'dispatch.failed' ? 'failed' : 'completed' } } as never);
    const ran = async (receiver: string) => JSON.parse((await send(`${served.url}/ran/${receiver}`, { method: 'GET' })).text) as string[];

    it("answers the example Worker's deliveries, and a repeat as a duplicate", async () => {
      const sent = delivery('dispatch.completed', `dsp_${randomUUID()}`);
      const first = await send(`${served.url}/webhooks/mitpo`, sent);
      expect(first.status).toBe(200);
      expect(first.json).toEqual({ success: true });
      const again = await send(`${served.url}/webhooks/mitpo`, sent);
      expect(again.status).toBe(200);
      expect(again.json).toEqual({ success: true, duplicate: true });
    });

    it('stops a replay at another receiver (another isolate) sharing the namespace: the handlers run once in all', async () => {
      const id = `dsp_${randomUUID()}`;
      const sent = delivery('dispatch.completed', id);
      const [a, b] = [`a-${id}`, `b-${id}`];
      expect((await send(`${served.url}/two/${a}`, sent)).json).toEqual({ success: true });
      expect((await send(`${served.url}/two/${b}`, sent)).json).toEqual({ success: true, duplicate: true });
      expect([...(await ran(a)), ...(await ran(b))]).toEqual([id]);
    });

    it('releases the key when a handler fails, so the retry runs the handlers again and then is done', async () => {
      const id = `dsp_fails_once_${randomUUID()}`;
      const sent = delivery('dispatch.failed', id);
      const receiver = `r-${id}`;
      const failed = await send(`${served.url}/two/${receiver}`, sent);
      expect(failed.status).toBe(500);
      expect(failed.json.error?.code).toBe('handler_failed');
      expect((await send(`${served.url}/two/${receiver}`, sent)).json).toEqual({ success: true });
      expect((await send(`${served.url}/two/${receiver}`, sent)).json).toEqual({ success: true, duplicate: true });
      expect(await ran(receiver)).toEqual([id, id]);
    });
  });
});
