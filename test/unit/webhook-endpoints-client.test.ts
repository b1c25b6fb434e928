import { inspect } from 'node:util';
import { MitpoApiError, WebhookEndpointsClient } from '../../src/api';
import { readLimitedBody } from '../../src/api/read-limited-body';
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

  // Found by a hunt: TypeScript's `private` is an ordinary property at run time, so logging or
  // serialising the client (a logger, an error reporter, a DI container's dump) printed the key.
  it('never shows its API key when the client is logged or serialised', () => {
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl: 'https://api.example.test' });
    expect(inspect(client, { depth: 10, showHidden: true })).not.toContain(API_KEY);
    expect(JSON.stringify(client)).not.toContain(API_KEY);
    expect(Object.values(client)).not.toContain(API_KEY);
  });

  // Found by a hunt: an option the client does not take (a misspelt or invented one) was accepted without a word.
  it('refuses an option it does not take', () => {
    expect(() => new WebhookEndpointsClient({ apiKey: API_KEY, timeoutMs: 1000 } as never)).toThrow(/unknown WebhookEndpointsClient option "timeoutMs"/);
  });

  // Found by a hunt: one field of another shape (`error` a string) threw the whole envelope away,
  // and an unexpected success body dropped its request id: the one thing MITPO's support asks for.
  it.each([
    ['an error that is a string', 500, { success: false, error: 'Internal Server Error', request_id: 'req_1' }, { code: 'http_500', requestId: 'req_1' }],
    ['an error without a code', 503, { error: { message: 'busy' }, request_id: 'req_2' }, { code: 'http_503', requestId: 'req_2' }],
    ['a success body of another shape', 200, { success: true, data: { nothing: true }, request_id: 'req_3' }, { code: 'invalid_response', requestId: 'req_3' }],
  ])('keeps the request id of %s', async (_name, status, answer, expected) => {
    const client = new WebhookEndpointsClient({
      apiKey: API_KEY,
      baseUrl: 'https://api.example.test',
      fetch: async () => new Response(JSON.stringify(answer), { status, headers: { 'content-type': 'application/json' } }),
    });
    await expect(client.list()).rejects.toMatchObject(expected);
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

  it('refuses an API key with a character no key has (a line break pasted into it), never quoting the key', () => {
    for (const apiKey of ['mk_live_SECRET\nPART2', 'mk_live_SECRET\u0000X', 'mk_live_SECRET\rX', 'mk_live_SECRET X', 'mk_live_SECRÉT']) {
      const construct = () => new WebhookEndpointsClient({ apiKey });
      expect(construct).toThrow(TypeError);
      expect(construct).toThrow(expect.objectContaining({ message: expect.not.stringContaining('SECR') }));
    }
  });

  it('reports a timeout as such', async () => {
    const hang: typeof fetch = (_url, init) =>
      new Promise((_resolve, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal!.reason)));
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, timeout: 0.02, fetch: hang });
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
    const sent = await api.hugeBodyClosed();
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
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
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, timeout: 0.02, fetch: trickle });
    await expect(client.list()).rejects.toMatchObject({ code: 'timeout' });
  });

  it('refuses a base URL that is not http(s), or a timeout that is not positive, at construction', () => {
    for (const baseUrl of ['ftp://api.mitpo.io', 'api.mitpo.io', 'https://', 'https:///v1', 'javascript:alert(1)', 'https://a b']) {
      expect(() => new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl })).toThrow(/baseUrl must be an http\(s\) URL/);
    }
    // Found by a hunt: a query or fragment moved every request to another path, and a password was printed in errors.
    // Also when it does not parse (a bad port, a space), or carries a token in its query.
    for (const baseUrl of ['https://api.mitpo.io?x=1', 'https://api.mitpo.io#f', 'https://user:hunter2@api.mitpo.io', 'https://user:hunter2@host:99999', 'https://u:hunter2@exa mple.com', 'https://api.mitpo.io/?token=hunter2']) {
      let message = '';
      expect(() => new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl })).toThrow(/baseUrl must be an http\(s\) URL without a user name, password, query or fragment/);
      try {
        new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl });
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).not.toContain('hunter2');
    }
    // Found by a hunt: with the two settings swapped (MITPO_API_BASE_URL holding the key), the key was quoted.
    expect(() => new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl: 'mk_live_LEAKCANARY2' })).toThrow(/\(got a value that is no URL, not shown\)/);
    for (const timeout of [0, -1, Number.NaN, Infinity]) {
      expect(() => new WebhookEndpointsClient({ apiKey: API_KEY, timeout })).toThrow(/timeout must be a positive number of seconds/);
    }
    // Milliseconds by mistake, or past what AbortSignal.timeout can take: refused, never a RangeError per call.
    for (const timeout of [15_000, 2 ** 32, 3e9]) {
      expect(() => new WebhookEndpointsClient({ apiKey: API_KEY, timeout })).toThrow(/seconds, not milliseconds/);
    }
    expect(new WebhookEndpointsClient({ apiKey: API_KEY }).baseUrl).toBe('https://api.mitpo.io');
    expect(new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl: 'http://localhost:8080//' }).baseUrl).toBe('http://localhost:8080');
  });

  it('reports a refused connection as network_error naming the cause, without the API key', async () => {
    const gone = await startMitpoApiMock();
    await gone.close();
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl: gone.baseUrl });
    const error = (await client.list().catch((e: unknown) => e)) as MitpoApiError;
    expect(error).toBeInstanceOf(MitpoApiError);
    expect(error).toMatchObject({ code: 'network_error', status: undefined, requestId: undefined });
    expect(error.message).toBe(`Could not reach MITPO's API at ${gone.baseUrl} (ECONNREFUSED)`);
    expect(error.cause).toHaveProperty('cause.code', 'ECONNREFUSED');
    expect(error.message).not.toContain(API_KEY);
  });

  it.each([
    ['a cause with a message but no code', Object.assign(new TypeError('fetch failed'), { cause: new Error('socket hang up') }), 'socket hang up'],
    ['an error without a cause', new Error('getaddrinfo ENOTFOUND api.mitpo.io'), 'getaddrinfo ENOTFOUND api.mitpo.io'],
    ['a thrown value that is not an Error', 'boom', 'network error'],
    ['a thrown null', null, 'network error'],
    ['a cause full of control characters', Object.assign(new TypeError('fetch failed'), { cause: { code: 'E\u001b[2JRESET\r\n' } }), 'E[2JRESET'],
  ])('names the network failure from %s', async (_name, thrown, described) => {
    const failing: typeof fetch = async () => {
      throw thrown;
    };
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, baseUrl: 'https://api.example.test', fetch: failing });
    const error = (await client.list().catch((e: unknown) => e)) as MitpoApiError;
    expect(error).toBeInstanceOf(MitpoApiError);
    expect(error.code).toBe('network_error');
    expect(error.message).toBe(`Could not reach MITPO's API at https://api.example.test (${described})`);
    expect(error.cause).toBe(thrown);
  });

  it('names a redirect without a Location header, and survives a body that fails to cancel', async () => {
    let cancelled = false;
    const redirecting: typeof fetch = async () =>
      new Response(
        new ReadableStream({
          cancel() {
            cancelled = true;
            throw new Error('connection reset while discarding');
          },
        }),
        { status: 307 },
      );
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, fetch: redirecting });
    const error = (await client.list().catch((e: unknown) => e)) as MitpoApiError;
    expect(error).toBeInstanceOf(MitpoApiError);
    expect(error).toMatchObject({ code: 'redirect', status: 307 });
    expect(error.message).toBe("MITPO's API answered GET /v1/webhooks with a redirect (307); redirects are not followed: check MITPO_API_BASE_URL");
    expect(cancelled).toBe(true);
  });

  it('answers a wrong API key with MITPO’s code and a hint to check MITPO_API_KEY, never echoing the key', async () => {
    const wrongKey = 'mk_test_wrong_0000';
    const client = new WebhookEndpointsClient({ apiKey: wrongKey, baseUrl: api.baseUrl });
    const error = (await client.list().catch((e: unknown) => e)) as MitpoApiError;
    expect(error).toBeInstanceOf(MitpoApiError);
    expect(error).toMatchObject({ code: 'unauthorized', status: 401, requestId: 'req_00000001' });
    expect(error.message).toBe("MITPO's API answered GET /v1/webhooks with 401: Invalid API key (check MITPO_API_KEY)");
    expect(error.message).not.toContain(wrongKey);
    expect(api.requests[0]!.authorization).toBe(`Bearer ${wrongKey}`);
  });

  // Found in review: the server's text was cleaned of control characters, but could still carry the key.
  it('never passes on the API key in what the server answered, even split by characters it strips', async () => {
    const key = 'mk_live_s3cr3t_4f5e6d7c';
    const echoed = `Invalid API key ${key}, or mk_live_s3cr3t\u200b_4f5e6d7c`;
    const body = JSON.stringify({ success: false, error: { code: key, message: echoed }, request_id: key });
    const client = new WebhookEndpointsClient({ apiKey: key, fetch: async () => new Response(body, { status: 401 }) });
    const error = (await client.list().catch((e: unknown) => e)) as MitpoApiError;
    expect(error).toBeInstanceOf(MitpoApiError);
    expect(JSON.stringify({ code: error.code, message: error.message, requestId: error.requestId })).not.toContain('s3cr3t');
    expect(error.message).toContain('Invalid API key [redacted], or [redacted]');
    const redirecting = new WebhookEndpointsClient({ apiKey: key, fetch: async () => new Response(null, { status: 302, headers: { location: `https://elsewhere.example/?k=${key}` } }) });
    const redirected = (await redirecting.list().catch((e: unknown) => e)) as MitpoApiError;
    expect(redirected.message).toContain('https://elsewhere.example/?k=[redacted]');
  });

  it.each([
    [
      'a 403 envelope without request_id',
      403,
      '{"success":false,"error":{"code":"forbidden","message":"Forbidden"}}',
      { code: 'forbidden', requestId: undefined },
      "MITPO's API answered GET /v1/webhooks with 403: Forbidden (the API key lacks permission for webhooks)",
    ],
    [
      'an HTML page from a proxy',
      502,
      '<html><body>Bad Gateway</body></html>',
      { code: 'http_502', requestId: undefined },
      "MITPO's API answered GET /v1/webhooks with 502",
    ],
    ['no body at all', 500, null, { code: 'http_500', requestId: undefined }, "MITPO's API answered GET /v1/webhooks with 500"],
    ['an empty body', 503, '', { code: 'http_503', requestId: undefined }, "MITPO's API answered GET /v1/webhooks with 503"],
    [
      'an envelope with only a request_id',
      503,
      '{"success":false,"request_id":"req_only"}',
      { code: 'http_503', requestId: 'req_only' },
      "MITPO's API answered GET /v1/webhooks with 503",
    ],
    [
      'an error with a code but no message',
      429,
      '{"success":false,"error":{"code":"rate_limited"},"request_id":"req_429"}',
      { code: 'rate_limited', requestId: 'req_429' },
      "MITPO's API answered GET /v1/webhooks with 429",
    ],
    [
      'an error that is a plain string, its message',
      500,
      '{"error":"boom"}',
      { code: 'http_500', requestId: undefined },
      "MITPO's API answered GET /v1/webhooks with 500: boom",
    ],
  ])('reports an error answer with %s as a MitpoApiError with what it has', async (_name, status, body, fields, message) => {
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, fetch: async () => new Response(body, { status }) });
    const error = (await client.list().catch((e: unknown) => e)) as MitpoApiError;
    expect(error).toBeInstanceOf(MitpoApiError);
    expect(error).toMatchObject({ ...fields, status });
    expect(error.message).toBe(message);
  });

  it('reports a successful answer without a body as invalid_response, never as success', async () => {
    const client = new WebhookEndpointsClient({ apiKey: API_KEY, fetch: async () => new Response(null, { status: 204 }) });
    const error = (await client.delete('whk_1').catch((e: unknown) => e)) as MitpoApiError;
    expect(error).toBeInstanceOf(MitpoApiError);
    expect(error).toMatchObject({ code: 'invalid_response', status: 204 });
    expect(error.message).toMatch(/^MITPO's API answered DELETE \/v1\/webhooks\/whk_1 with 204 but an unexpected body \(body: /);
    const notJson = new WebhookEndpointsClient({ apiKey: API_KEY, fetch: async () => new Response('OK', { status: 200 }) });
    await expect(notJson.list()).rejects.toMatchObject({ code: 'invalid_response', message: expect.stringContaining('unexpected body (body: ') });
  });
});

describe('MitpoApiError', () => {
  it('can be built with a code and a message alone, as a user faking a failure would', () => {
    const error = new MitpoApiError('not_found', 'No such webhook endpoint');
    expect(error).toBeInstanceOf(Error);
    expect(error).toBeInstanceOf(MitpoApiError);
    expect(error).toMatchObject({ name: 'MitpoApiError', code: 'not_found', message: 'No such webhook endpoint', status: undefined, requestId: undefined });
    expect(error.cause).toBeUndefined();
    const cause = new Error('socket hang up');
    expect(new MitpoApiError('network_error', 'down', { status: 502, requestId: 'req_1', cause })).toMatchObject({ status: 502, requestId: 'req_1', cause });
  });
});

describe('readLimitedBody', () => {
  const streamOf = (chunks: string[], onCancel?: () => void) =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
        controller.close();
      },
      cancel() {
        onCancel?.();
        throw new Error('reset while cancelling');
      },
    });

  it('reads an answer without a body as empty and complete', async () => {
    expect(await readLimitedBody(new Response(null, { status: 204 }), 10)).toEqual({ text: '', complete: true });
  });

  it('keeps the first maxBytes of a longer answer and cancels the rest, even when cancelling fails', async () => {
    let cancelled = false;
    const response = new Response(
      streamOf(['abc', 'defg', 'never read'], () => {
        cancelled = true;
      }),
    );
    expect(await readLimitedBody(response, 5)).toEqual({ text: 'abcde', complete: false });
    expect(cancelled).toBe(true);
  });

  it('reads an answer of exactly maxBytes in several chunks as complete, and turns a character cut at the limit into U+FFFD', async () => {
    expect(await readLimitedBody(new Response(streamOf(['ab', 'cd', 'e'])), 5)).toEqual({ text: 'abcde', complete: true });
    expect(await readLimitedBody(new Response('a€'), 3)).toEqual({ text: 'a\uFFFD', complete: false });
  });
});
