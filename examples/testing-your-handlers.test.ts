// How an app tests its own MITPO handlers: real HTTP, real signatures, no mocks.
import express from 'express';
import { MitpoWebhooks } from 'mitpo-webhooks';
import { sendDelivery, signedDelivery } from 'mitpo-webhooks/testing';

const secret = 'whsec_test_secret';

// The app under test: in your code this comes from your own module.
function createApp(markLive: (dispatchId: string, resourceId?: string) => Promise<void>) {
  const webhooks = new MitpoWebhooks({ secret });
  webhooks.on('dispatch.completed', (event) => markLive(event.data.dispatch_id, event.data.provider_resource_id));
  const app = express();
  app.post('/webhooks/mitpo', webhooks.middleware());
  return app;
}

test('a completed dispatch is marked live', async () => {
  const markLive = jest.fn(async () => {});
  const { status, body } = await sendDelivery(createApp(markLive), {
    event: 'dispatch.completed',
    secret,
    data: { dispatch_id: 'dsp_42', channel: 'meta_ads', status: 'completed', provider_resource_id: '2385' },
  });
  expect(status).toBe(200);
  expect(body).toEqual({ success: true });
  expect(markLive).toHaveBeenCalledWith('dsp_42', '2385');
});

test('a failing handler answers 500, so MITPO retries, and the retry runs it again', async () => {
  const markLive = jest.fn().mockRejectedValueOnce(new Error('db down')).mockResolvedValue(undefined);
  const app = createApp(markLive);
  const delivery = signedDelivery({ event: 'dispatch.completed', secret });
  expect((await sendDelivery(app, delivery)).status).toBe(500);
  expect((await sendDelivery(app, delivery)).status).toBe(200);
  expect(markLive).toHaveBeenCalledTimes(2);
});

test('a forged delivery never reaches the handler', async () => {
  const markLive = jest.fn(async () => {});
  const { status, body } = await sendDelivery(createApp(markLive), { event: 'dispatch.completed', secret: 'whsec_attacker' });
  expect(status).toBe(401);
  expect(body).toMatchObject({ success: false, error: { code: 'invalid_signature' } });
  expect(markLive).not.toHaveBeenCalled();
});
