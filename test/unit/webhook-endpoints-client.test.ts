import { MitpoApiError, WebhookEndpointsClient } from '../../src';
import { API_KEY, startMitpoApiMock } from '../helpers/mitpo-api-mock';

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
});
