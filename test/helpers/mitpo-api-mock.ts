import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { deferred } from './recorder';

export const API_KEY = 'mk_test_4f5e6d7c8b9a';

/**
 * - `redirect`: every call answers 302 to `redirectTo`;
 * - `huge`: 200 with a chunked body of up to 400 MiB, written as the client reads it
 *   (`hugeBodyClosed` tells how much went out before the client hung up);
 * - `huge_declared`: 200 with `Content-Length` 400 MiB, then the same stream;
 * - `control_chars`: an error answer, and endpoint fields, full of terminal escapes (and a
 *   variation selector past U+FFFF in the signing secret).
 */
export type ApiMode = 'normal' | 'server_error' | 'malformed' | 'redirect' | 'huge' | 'huge_declared' | 'control_chars' | 'hash_in_secret';

/** C0, DEL and C1 controls a hostile server might put in its text: ESC sequences, CSI, a newline. */
export const CONTROL_TEXT = '\u001b[2J\u001b[31mred\u0007\r\nX-Injected: yes\u007f\u009b1m';

const HUGE_BYTES = 400 * 1024 * 1024;

/**
 * MITPO's /v1/webhooks API as its reference documents it: Bearer auth, the
 * { success, data, request_id } envelope, create answering with signing_secret.
 */
export async function startMitpoApiMock() {
  const endpoints = new Map<string, { id: string; url: string; events: string[]; created_at: string }>();
  const requests: Array<{ method: string; url: string; authorization: string | undefined; body: unknown }> = [];
  let mode: ApiMode = 'normal';
  let redirectTo = 'http://127.0.0.1:1/v1/webhooks';
  let hugeClosed = deferred<number>();
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
    if (mode === 'redirect') return void res.writeHead(302, { location: redirectTo, 'content-type': 'text/plain' }).end('moved');
    if (mode === 'huge' || mode === 'huge_declared') {
      res.writeHead(200, { 'content-type': 'application/json', ...(mode === 'huge_declared' ? { 'content-length': String(HUGE_BYTES) } : {}) });
      return void streamHugeBody(res, hugeClosed.resolve);
    }
    if (mode === 'control_chars') {
      if (req.method === 'GET') {
        const endpoint = { id: `whk_${CONTROL_TEXT}`, url: `https://example.com/${CONTROL_TEXT}`, events: [CONTROL_TEXT], created_at: CONTROL_TEXT };
        return answer(200, { success: true, data: [endpoint], request_id: requestId });
      }
      if (req.method === 'POST') {
        const endpoint = { id: 'whk_ctl', url: body.url, events: body.events, created_at: '2026-03-22T10:00:00Z' };
        return answer(200, { success: true, data: { ...endpoint, signing_secret: 'whsec_ctl\nEVIL=1\u{e0100}' }, request_id: requestId });
      }
      return answer(500, { success: false, error: { code: `internal${CONTROL_TEXT}`, message: `Broken ${CONTROL_TEXT}` }, request_id: `req_${CONTROL_TEXT}` });
    }

    if (req.method === 'POST' && req.url === '/v1/webhooks') {
      const id = `whk_${String(next++).padStart(8, 'r')}`;
      const endpoint = { id, url: body.url, events: body.events, created_at: '2026-03-22T10:00:00Z' };
      endpoints.set(id, endpoint);
      const secret = mode === 'hash_in_secret' ? `whsec_${id}#secret` : `whsec_${id}_secret`;
      return answer(200, { success: true, data: { ...endpoint, signing_secret: secret }, request_id: requestId });
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
    setMode: (value: ApiMode) => {
      mode = value;
      hugeClosed = deferred<number>();
    },
    setRedirectTo: (url: string) => void (redirectTo = url),
    /** Bytes of the `huge` body written, once its connection closed (the client hung up, or all was sent). */
    hugeBodyClosed: () => hugeClosed.promise,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Writes up to HUGE_BYTES in 64 KiB chunks, only as fast as the client reads, until it hangs up. */
function streamHugeBody(res: http.ServerResponse, report: (bytes: number) => void): void {
  const chunk = Buffer.alloc(64 * 1024, 'x');
  let sent = 0;
  let closed = false;
  res.on('close', () => {
    closed = true;
    report(sent);
  });
  const pump = () => {
    while (!closed && sent < HUGE_BYTES) {
      sent += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    if (!closed) res.end();
  };
  pump();
}
