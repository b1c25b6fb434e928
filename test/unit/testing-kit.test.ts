import http from 'node:http';
import { MitpoWebhooks, parseEvent, verifySignature, MITPO_EVENT_NAMES } from '../../src';
import { SAMPLE_DATA, sendDelivery, signedDelivery } from '../../src/testing';
import { listen } from '../helpers/servers';

const SECRET = 'whsec_kit';

describe('signedDelivery', () => {
  it('builds a delivery byte for byte like MITPO’s', () => {
    const { body, headers } = signedDelivery({
      event: 'dispatch.completed',
      secret: SECRET,
      data: { dispatch_id: 'dsp_a1b2c3d4', channel: 'meta_ads', status: 'completed', provider_resource_id: '23851234567890' },
      timestamp: new Date('2026-03-22T10:30:00.789Z'),
      sentAt: 1_774_175_401,
    });
    expect(body).toBe(
      '{"event":"dispatch.completed","timestamp":"2026-03-22T10:30:00Z","data":{"dispatch_id":"dsp_a1b2c3d4","channel":"meta_ads","status":"completed","provider_resource_id":"23851234567890"}}',
    );
    expect(Object.keys(headers)).toEqual(['Content-Type', 'X-MITPO-Signature', 'X-MITPO-Timestamp', 'X-MITPO-Event']);
    expect(headers['Content-Type']).toBe('application/json');
    expect(headers['X-MITPO-Timestamp']).toBe('1774175401');
    expect(headers['X-MITPO-Event']).toBe('dispatch.completed');
    expect(verifySignature(body, headers['X-MITPO-Signature'], SECRET)).toBe(true);
  });

  it.each(MITPO_EVENT_NAMES)('defaults data to a sample that the %s schema accepts', (event) => {
    const { body } = signedDelivery({ event, secret: SECRET });
    expect(parseEvent(JSON.parse(body)).data).toEqual(SAMPLE_DATA[event]);
  });

  it('refuses a bad secret or moment', () => {
    expect(() => signedDelivery({ event: 'dispatch.completed', secret: ' whsec_x' })).toThrow(TypeError);
    expect(() => signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp: new Date('nope') })).toThrow(/timestamp/);
    expect(() => signedDelivery({ event: '' as never, secret: SECRET })).toThrow(/event/);
  });
});

describe('sendDelivery', () => {
  const receiver = () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const seen: string[] = [];
    webhooks.onAny((event) => void seen.push(event.event));
    const middleware = webhooks.middleware({ path: '/hooks' });
    const listener: http.RequestListener = (req, res) => middleware(req, res, () => res.writeHead(404).end('nope'));
    return { listener, seen };
  };

  it('starts a request listener on a free port for the call, and stops it', async () => {
    const { listener, seen } = receiver();
    const result = await sendDelivery(listener, { event: 'connection.active', secret: SECRET }, { path: '/hooks' });
    expect(result.status).toBe(200);
    expect(result.body).toEqual({ success: true });
    expect(result.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(seen).toEqual(['connection.active']);
  });

  it('sends to a listening server or a URL, and can resend the same delivery', async () => {
    const { listener, seen } = receiver();
    const server = await listen(http.createServer(listener));
    try {
      const url = server.url.replace('/webhooks/mitpo', '/hooks');
      const first = await sendDelivery(url, { event: 'dispatch.failed', secret: SECRET });
      const again = await sendDelivery(url, first.delivery);
      expect(again.body).toEqual({ success: true, duplicate: true });
      expect(seen).toEqual(['dispatch.failed']);
      const notFound = await sendDelivery(new URL(server.url), first.delivery);
      expect(notFound.status).toBe(404);
      expect(notFound.body).toMatchObject({ success: false, error: { code: 'not_json' } });
    } finally {
      await server.close();
    }
  });
});
