import { gzipSync } from 'node:zlib';
import http from 'node:http';
import { MitpoWebhooks, type MitpoWebhooksOptions, type WebhookVerificationError } from '../../src';
import { signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';
import { rawSocket, requestHead } from '../helpers/raw-socket';
import { deferred, SECRET } from '../helpers/recorder';
import { listen, type RunningServer } from '../helpers/servers';

let server: RunningServer;
let runs: number;
let failure: ReturnType<typeof deferred<WebhookVerificationError>>;

async function start(options: Partial<MitpoWebhooksOptions> = {}) {
  runs = 0;
  failure = deferred<WebhookVerificationError>();
  const webhooks = new MitpoWebhooks({ secret: SECRET, ...options });
  webhooks.onAny(() => void (runs += 1));
  webhooks.onFailure((error) => failure.resolve(error));
  const middleware = webhooks.middleware();
  server = await listen(http.createServer((req, res) => middleware(req, res, () => res.end())));
}

/** The server is still up and handling real deliveries. */
async function expectStillServing() {
  const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
  expect((await send(server.url, { headers, body })).status).toBe(200);
}

/** A raw connection that has sent a chunked request's head, its body still to come. */
async function chunkedRequest(headers: Record<string, string>) {
  const socket = rawSocket(server.url);
  await socket.connected;
  await socket.write(requestHead(socket.path, { ...headers, 'Transfer-Encoding': 'chunked' }));
  return socket;
}

afterEach(() => server.close());

describe('transport faults over real sockets', () => {
  it('a client that aborts mid-body: body_read_failed, no handler, server up', async () => {
    await start();
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const socket = rawSocket(server.url);
    await socket.connected;
    await socket.write(requestHead(socket.path, { ...headers, 'Content-Length': String(body.length) }) + body.slice(0, 40));
    socket.destroy();
    expect((await failure.promise).code).toBe('body_read_failed');
    expect(runs).toBe(0);
    await expectStillServing();
  });

  it('a client trickling its body past bodyTimeout: 408 body_timeout and the connection closed', async () => {
    await start({ bodyTimeout: 0.15 });
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const socket = rawSocket(server.url);
    await socket.connected;
    await socket.write(requestHead(socket.path, { ...headers, 'Content-Length': String(body.length) }) + body.slice(0, 10));
    expect(await socket.status()).toBe(408);
    expect(socket.received()).toMatch(/connection: close/i);
    expect(socket.received()).toContain('"code":"body_timeout"');
    await socket.closed;
    expect(runs).toBe(0);
    await expectStillServing();
  });

  it('takes bodyTimeout: 10 as ten seconds, not ten milliseconds: a body whose second half arrives 50 ms later is handled', async () => {
    await start({ bodyTimeout: 10 });
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    // The second half arrives 50 ms after the first: far inside 10 s, far outside 10 ms.
    const reply = await new Promise<number>((resolve, reject) => {
      const req = http.request(server.url, { method: 'POST', headers, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write(body.slice(0, 20));
      setTimeout(() => req.end(body.slice(20)), 50);
    });
    expect(reply).toBe(200);
  });

  it('a Content-Length shorter than the body: only the declared bytes are signed over → 401, no handler', async () => {
    await start();
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const socket = rawSocket(server.url);
    await socket.connected;
    const declared = body.length - 20;
    await socket.write(requestHead(socket.path, { ...headers, 'Content-Length': String(declared) }) + body.slice(0, declared));
    expect(await socket.status()).toBe(401);
    // The surplus then reads as a malformed next request, which Node's parser refuses and closes.
    await socket.write(body.slice(declared));
    await socket.closed;
    expect(runs).toBe(0);
    await expectStillServing();
  });

  it('a Content-Length longer than the body, then the client gives up: body_read_failed, no handler', async () => {
    await start();
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const socket = rawSocket(server.url);
    await socket.connected;
    await socket.write(requestHead(socket.path, { ...headers, 'Content-Length': String(body.length + 500) }) + body);
    socket.end();
    expect((await failure.promise).code).toBe('body_read_failed');
    expect(runs).toBe(0);
    await expectStillServing();
  });

  it('a chunked body past the limit: 413 while the body is still coming', async () => {
    await start({ limit: 4096 });
    const { headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const socket = await chunkedRequest(headers);
    const chunk = 'x'.repeat(1024);
    for (let i = 0; i < 6; i++) await socket.write(`${(1024).toString(16)}\r\n${chunk}\r\n`);
    // No terminating chunk is ever sent: the answer cannot have waited for the whole body.
    expect(await socket.status()).toBe(413);
    expect(socket.received()).toContain('"code":"payload_too_large"');
    socket.destroy();
    expect(runs).toBe(0);
    await expectStillServing();
  });

  // Found in a hunt: raw-body keeps every chunk as an object of its own until the body ends, so a
  // chunked body of one-byte chunks (six bytes each on the wire, many to a read) held some 200 times its size.
  it('a chunked body in far more chunks than its size warrants: 400 while the body is still coming', async () => {
    await start({ bodyTimeout: 2 });
    const { headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const socket = await chunkedRequest(headers);
    // No terminating chunk: the answer cannot have waited for the whole body (nor for bodyTimeout's 408).
    await socket.write('1\r\nx\r\n'.repeat(10_000));
    expect(await socket.status()).toBe(400);
    expect(socket.received()).toContain('"code":"body_read_failed"');
    socket.destroy();
    expect(runs).toBe(0);
    await expectStillServing();
  });

  it('a delivery sent chunked in a few hundred small chunks is read as any other', async () => {
    await start();
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const socket = await chunkedRequest(headers);
    for (let at = 0; at < body.length; at += 1) await socket.write(`1\r\n${body[at]}\r\n`);
    await socket.write('0\r\n\r\n');
    expect(await socket.status()).toBe(200);
    socket.destroy();
    expect(runs).toBe(1);
  });

  it('a gzip body: 415, as MITPO never compresses and inflating before verifying would be a bomb surface', async () => {
    await start();
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const zipped = gzipSync(body);
    const reply = await send(server.url, { headers: { ...headers, 'Content-Encoding': 'gzip' }, body: zipped });
    expect(reply.status).toBe(415);
    expect(reply.json.error?.code).toBe('unsupported_media_type');
    expect(runs).toBe(0);
  });
});
