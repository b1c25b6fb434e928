import http from 'node:http';
import type { AddressInfo } from 'node:net';

export const API_KEY = 'mk_test_4f5e6d7c8b9a';

export type ApiMode = 'normal' | 'server_error' | 'malformed';

/**
 * MITPO's /v1/webhooks API as its reference documents it: Bearer auth, the
 * { success, data, request_id } envelope, create answering with signing_secret.
 */
export async function startMitpoApiMock() {
  const endpoints = new Map<string, { id: string; url: string; events: string[]; created_at: string }>();
  const requests: Array<{ method: string; url: string; authorization: string | undefined; body: unknown }> = [];
  let mode: ApiMode = 'normal';
  let next = 1;

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const body = text === '' ? undefined : JSON.parse(text);
    requests.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, body });
    const requestId = `req_${String(requests.length).padStart(8, '0')}`;
    const answer = (status: number, payload: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(payload));
    };
    if (req.headers.authorization !== `Bearer ${API_KEY}`) {
      return answer(401, { success: false, error: { code: 'unauthorized', message: 'Invalid API key' }, request_id: requestId });
    }
    if (mode === 'server_error') {
      return answer(500, { success: false, error: { code: 'internal_error', message: 'Something went wrong' }, request_id: requestId });
    }
    if (mode === 'malformed') return answer(200, { ok: true, items: [] });

    if (req.method === 'POST' && req.url === '/v1/webhooks') {
      const id = `whk_${String(next++).padStart(8, 'r')}`;
      const endpoint = { id, url: body.url, events: body.events, created_at: '2026-03-22T10:00:00Z' };
      endpoints.set(id, endpoint);
      return answer(200, { success: true, data: { ...endpoint, signing_secret: `whsec_${id}_secret` }, request_id: requestId });
    }
    if (req.method === 'GET' && req.url === '/v1/webhooks') {
      return answer(200, { success: true, data: [...endpoints.values()], request_id: requestId });
    }
    const match = /^\/v1\/webhooks\/([\w-]+)$/.exec(req.url ?? '');
    if (req.method === 'DELETE' && match) {
      if (!endpoints.delete(match[1]!)) {
        return answer(404, { success: false, error: { code: 'not_found', message: 'No such webhook endpoint' }, request_id: requestId });
      }
      return answer(200, { success: true, data: { id: match[1], deleted: true }, request_id: requestId });
    }
    return answer(404, { success: false, error: { code: 'not_found', message: 'Not found' }, request_id: requestId });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    endpoints,
    requests,
    setMode: (value: ApiMode) => void (mode = value),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
