import { MitpoApiError, WebhookEndpointsClient } from '../../src/api';
import { MAX_ANSWER_BYTES } from '../../src/api/webhook-endpoints-client';
import { API_KEY, startMitpoApiMock } from '../helpers/mitpo-api-mock';

// C0 controls, DEL and C1 controls: none may survive into a message.
// eslint-disable-next-line no-control-regex -- these characters are what the tests look for
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

describe('WebhookEndpointsClient', () => {
  let api: Awaited<ReturnType<typeof startMitpoApiMock>>;
  beforeEach(async () => {
    api = await startMitpoApiMock();
  });
  afterEach(() => api.close());

  it('creates, lists and deletes, returning the validated data', async () => {
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl: `${api.baseUrl}/` });
    const created = await client.create({ url: 'https://example.com/h', events: ['dispatch.completed'] });
    expect(created).toMatchObject({ url: 'https://example.com/h', events: ['dispatch.completed'], signing_secret: expect.stringMatching(/^whsec_/) });
    expect(await client.list()).toEqual([expect.objectContaining({ id: created.id })]);
    expect(await client.delete(created.id)).toEqual({ id: created.id, deleted: true });
  });

  it('throws MitpoApiError with MITPO’s code, the status and the request id', async () => {
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl: api.baseUrl });
    const error = await client.delete('whk_missing').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MitpoApiError);
    expect(error).toMatchObject({ code: 'not_found', status: 404, requestId: expect.stringMatching(/^req_/) });
    api.setMode('malformed');
    await expect(client.list()).rejects.toMatchObject({ code: 'invalid_response', status: 200 });
  });

  it('refuses bad input before calling the API', async () => {
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl: api.baseUrl });
    await expect(client.create({ url: 'http://example.com/h', events: ['dispatch.completed'] })).rejects.toThrow(/https/);
    await expect(client.create({ url: 'https://example.com/h', events: [] })).rejects.toThrow(/at least one/);
    await expect(client.create({ url: 'https://example.com/h', events: ['nope' as never] })).rejects.toThrow(/one of/);
    await expect(client.delete('../../etc')).rejects.toThrow(TypeError);
    expect(api.requests).toHaveLength(0);
    for (const apiKey of ['', ' mk_x', undefined]) {
      expect(() => new WebhookEndpointsClient({ apiKey: apiKey as string })).toThrow(TypeError);
    }
  });

  it('reports a timeout as such', async () => {
    const hang: typeof fetch = (_url, init) =>
      new Promise((_resolve, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal!.reason)));
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, timeout: 20, fetch: hang });
    await expect(client.list()).rejects.toMatchObject({ code: 'timeout' });
  });

  it('follows no redirect: a 3xx is a MitpoApiError naming the status, and the other origin is never called', async () => {
    const elsewhere = await startMitpoApiMock();
    try {
      api.setMode('redirect');
      api.setRedirectTo(`${elsewhere.baseUrl}/v1/webhooks`);
      const client = new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl: api.baseUrl });
      const error = (await client.list().catch((e: unknown) => e)) as MitpoApiError;
      expect(error).toBeInstanceOf(MitpoApiError);
      expect(error).toMatchObject({ code: 'redirect', status: 302 });
      expect(error.message).toBe(
        `MITPO's API answered GET /v1/webhooks with a redirect (302) to ${elsewhere.baseUrl}/v1/webhooks; redirects are not followed: check MITPO_API_BASE_URL`,
      );
      await expect(client.create({ url: 'https://example.com/h', events: ['dispatch.completed'] })).rejects.toMatchObject({ code: 'redirect', status: 302 });
      expect(elsewhere.requests).toHaveLength(0);
    } finally {
      await elsewhere.close();
    }
  });

  it('asks fetch not to follow redirects', async () => {
    const seen: RequestInit[] = [];
    const spy: typeof fetch = async (_url, init) => {
      seen.push(init!);
      return new Response('{"success":true,"data":[]}', { status: 200 });
    };
    await new WebhookEndpointsClient({ apiKey: API_KEY, fetch: spy }).list();
    expect(seen[0]!.redirect).toBe('manual');
  });

  it.each([
    ['streamed without a length', 'huge' as const],
    ['with a declared 400 MiB Content-Length', 'huge_declared' as const],
  ])('reads at most 1 MiB of an answer %s, and stops the transfer', async (_name, mode) => {
    api.setMode(mode);
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl: api.baseUrl });
    const error = (await client.list().catch((e: unknown) => e)) as MitpoApiError;
    expect(error).toBeInstanceOf(MitpoApiError);
    expect(error).toMatchObject({ code: 'response_too_large', status: 200 });
    expect(error.message).toBe(`MITPO's API answered GET /v1/webhooks with 200 and a body larger than ${MAX_ANSWER_BYTES} bytes; it was not read`);
    expect(MAX_ANSWER_BYTES).toBe(1024 * 1024);
    // The server stops once the client hangs up: far less than the 400 MiB it had to send.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(api.hugeBytesSent()).toBeGreaterThan(0);
    expect(api.hugeBytesSent()).toBeLessThan(64 * 1024 * 1024);
  });

  it('reads an answer of exactly 1 MiB', async () => {
    const json = '{"success":true,"data":[]}';
    const body = json + ' '.repeat(MAX_ANSWER_BYTES - json.length);
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, fetch: async () => new Response(body, { status: 200 }) });
    expect(await client.list()).toEqual([]);
    const over = new WebhookEndpointsClient({ apiKey: API_KEY, fetch: async () => new Response(`${body} `, { status: 200 }) });
    await expect(over.list()).rejects.toMatchObject({ code: 'response_too_large' });
  });

  it('strips control characters from the server’s code, message and request id', async () => {
    api.setMode('control_chars');
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl: api.baseUrl });
    const error = (await client.delete('whk_1').catch((e: unknown) => e)) as MitpoApiError;
    expect(error).toBeInstanceOf(MitpoApiError);
    expect(error.message).toBe("MITPO's API answered DELETE /v1/webhooks/whk_1 with 500: Broken [2J[31mredX-Injected: yes1m");
    expect(error.code).toBe('internal[2J[31mredX-Injected: yes1m');
    expect(error.requestId).toBe('req_[2J[31mredX-Injected: yes1m');
    for (const text of [error.message, error.code, error.requestId!]) expect(text).not.toMatch(CONTROL);
  });

  it('reports a timeout while the body is still arriving as such', async () => {
    const trickle: typeof fetch = async (_url, init) =>
      new Response(
        new ReadableStream({
          start(controller) {
            controller.enqueue(new TextEncoder().encode('{"success":'));
            init!.signal!.addEventListener('abort', () => controller.error(init!.signal!.reason));
          },
        }),
        { status: 200 },
      );
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, timeout: 20, fetch: trickle });
    await expect(client.list()).rejects.toMatchObject({ code: 'timeout' });
  });
});
