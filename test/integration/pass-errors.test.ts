import { fork } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import express5 from 'express';
import express4 from 'express4';
import { MitpoWebhooks, WebhookVerificationError, type ReplayStore } from '../../src';
import { signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';
import { rawSocket, requestHead } from '../helpers/raw-socket';
import { deferred, SECRET } from '../helpers/recorder';
import { listen, WEBHOOK_PATH } from '../helpers/servers';

const EXPRESSES = { 'Express 5': express5, 'Express 4': express4 } as const;

describe.each(Object.keys(EXPRESSES) as Array<keyof typeof EXPRESSES>)('middleware({ passErrors: true }) under %s', (name) => {
  const express = EXPRESSES[name];

  async function withApp(webhooks: MitpoWebhooks, ownErrorHandler: boolean, run: (url: string, seen: unknown[]) => Promise<void>) {
    const seen: unknown[] = [];
    const app = express();
    app.all(WEBHOOK_PATH, webhooks.middleware({ passErrors: true }));
    if (ownErrorHandler) {
      app.use((err: unknown, _req: unknown, res: express5.Response, _next: unknown) => {
        seen.push({ err, headersSent: res.headersSent });
        const error = err as WebhookVerificationError;
        res.status(error.status).json({ handledBy: 'the app', code: error.code });
      });
    }
    const server = await listen(http.createServer(app));
    try {
      await run(server.url, seen);
    } finally {
      await server.close();
    }
  }

  it('hands refusals to the app’s error handler with nothing written, and still answers successes and duplicates', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    let runs = 0;
    webhooks.onAny(() => void (runs += 1));
    await withApp(webhooks, true, async (url, seen) => {
      const forged = await send(url, signedDelivery({ event: 'dispatch.completed', secret: 'whsec_other' }));
      expect(forged.status).toBe(401);
      expect(forged.json).toEqual({ handledBy: 'the app', code: 'invalid_signature' });
      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatchObject({ headersSent: false });
      expect((seen[0] as { err: unknown }).err).toBeInstanceOf(WebhookVerificationError);

      const good = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      expect((await send(url, good)).json).toEqual({ success: true });
      expect((await send(url, good)).json).toEqual({ success: true, duplicate: true });
      expect(seen).toHaveLength(1);
      expect(runs).toBe(1);
    });
  });

  it('closes the connection of a refusal made before the body was read, so the rest of it is never read', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    await withApp(webhooks, true, async (url, seen) => {
      const socket = rawSocket(`${url}${WEBHOOK_PATH}`);
      await socket.connected;
      // A body declared far longer than what is sent: only a closed connection ends this exchange.
      const head = requestHead(WEBHOOK_PATH, { 'Content-Type': 'application/json', 'X-MITPO-Signature': 'bogus', 'Content-Length': '1000000' });
      await socket.write(`${head}{"event":`);
      expect(await socket.status()).toBe(400);
      expect(socket.received().toLowerCase()).toContain('\r\nconnection: close\r\n');
      await socket.closed;
      expect(seen).toMatchObject([{ headersSent: false }]);
    });
  });

  // Found in a hunt: Express's default error handler reads the whole request before it answers,
  // so a refusal passed on before the body was read held the connection for as long, and read
  // as much, as the sender chose: bodyTimeout and limit never applied.
  it.each([
    // bodyTimeout 0.2 s: only its timer can end this one.
    ['stalls past bodyTimeout', 0.2, 5],
    // bodyTimeout 60 s: only the limit can end this one within the test's time.
    ['goes past the limit', 60, 4096],
  ])('drops the connection of a refused request whose body %s under Express’s default error handler', async (_name, bodyTimeout, bytes) => {
    const webhooks = new MitpoWebhooks({ secret: SECRET, bodyTimeout, limit: 1024 });
    await withApp(webhooks, false, async (url) => {
      const socket = rawSocket(`${url}${WEBHOOK_PATH}`);
      await socket.connected;
      const head = requestHead(WEBHOOK_PATH, { 'Content-Type': 'application/json', 'X-MITPO-Signature': 'bogus', 'Content-Length': '1000000' });
      await socket.write(`${head}${'x'.repeat(bytes)}`);
      await socket.closed;
      expect(socket.received()).not.toContain('HTTP/1.1 200');
    });
  });

  /** An app whose error handler is `errorHandler`, with the middleware at WEBHOOK_PATH. */
  async function withErrorHandler(webhooks: MitpoWebhooks, errorHandler: express5.ErrorRequestHandler, run: (url: string) => Promise<void>) {
    const app = express();
    app.all(WEBHOOK_PATH, webhooks.middleware({ passErrors: true }));
    app.use(errorHandler);
    const server = await listen(http.createServer(app));
    try {
      await run(server.url);
    } finally {
      await server.close();
    }
  }

  // Found in review of the bound above: its timer ran from the hand-off, not from a read of the
  // body, so an error handler slower than bodyTimeout lost its answer though the body had all come.
  it('leaves an error handler that answers without reading the body alone, however slow', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET, bodyTimeout: 0.1 });
    await withErrorHandler(
      webhooks,
      (err: WebhookVerificationError, _req, res, _next) => {
        // The app's own slow work (an audit call): three times bodyTimeout.
        setTimeout(() => res.status(err.status).json({ code: err.code }), 300);
      },
      async (url) => {
        const socket = rawSocket(`${url}${WEBHOOK_PATH}`);
        await socket.connected;
        await socket.write(`${requestHead(WEBHOOK_PATH, { 'Content-Type': 'application/json', 'X-MITPO-Signature': 'bogus', 'Content-Length': '10' })}12345`);
        await socket.write('67890');
        expect(await socket.status()).toBe(400);
        socket.destroy();
      },
    );
  });

  // Found in review of the bound above: counting put the request in flowing mode at once, so what
  // came before an error handler began to read the body itself was lost to it.
  it('loses nothing of the body to an error handler that reads it itself', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const reading = deferred();
    await withErrorHandler(
      webhooks,
      (err: WebhookVerificationError, req, res, _next) => {
        setImmediate(() => {
          const chunks: Buffer[] = [];
          req.on('data', (chunk: Buffer) => chunks.push(chunk));
          req.on('end', () => res.status(err.status).json({ code: err.code, read: Buffer.concat(chunks).toString() }));
          reading.resolve();
        });
      },
      async (url) => {
        const socket = rawSocket(`${url}${WEBHOOK_PATH}`);
        await socket.connected;
        await socket.write(`${requestHead(WEBHOOK_PATH, { 'Content-Type': 'application/json', 'X-MITPO-Signature': 'bogus', 'Content-Length': '10' })}12345`);
        await reading.promise;
        await socket.write('67890');
        expect(await socket.status()).toBe(400);
        await socket.closed;
        expect(socket.received()).toContain('"read":"1234567890"');
      },
    );
  });

  // Found in a second review: a read that never emits 'resume' went unbounded: async iteration
  // (a 'readable' listener and read()), and a request already flowing before the middleware.
  it.each([
    [
      'reads it by async iteration',
      (app: ReturnType<typeof express>) => app,
      // Four parameters: Express takes a function for an error handler by its arity.
      (async (err: WebhookVerificationError, req: express5.Request, res: express5.Response, _next: express5.NextFunction) => {
        try {
          for await (const _chunk of req) void _chunk;
        } catch {
          return; // The connection was dropped under the read: nothing is left to answer.
        }
        res.status(err.status).json({ code: err.code });
      }) as express5.ErrorRequestHandler,
    ],
    [
      'is Express’s default one, the request flowing already (a middleware before counts its bytes)',
      (app: ReturnType<typeof express>) => app.use((req, _res, next) => void (req.on('data', () => undefined), next())),
      undefined,
    ],
  ])('bounds a refused body that an error handler %s', async (_name, before, errorHandler) => {
    const webhooks = new MitpoWebhooks({ secret: SECRET, bodyTimeout: 0.2 });
    const app = express();
    before(app);
    app.all(WEBHOOK_PATH, webhooks.middleware({ passErrors: true }));
    if (errorHandler !== undefined) app.use(errorHandler);
    const server = await listen(http.createServer(app));
    try {
      const socket = rawSocket(`${server.url}${WEBHOOK_PATH}`);
      await socket.connected;
      await socket.write(`${requestHead(WEBHOOK_PATH, { 'Content-Type': 'application/json', 'X-MITPO-Signature': 'bogus', 'Content-Length': '1000000' })}12345`);
      await socket.closed;
      expect(socket.received()).not.toContain('HTTP/1.1 200');
    } finally {
      await server.close();
    }
  });

  it('keeps the connection of a refused request that has all arrived, with nothing left to read', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    await withApp(webhooks, true, async (url) => {
      const socket = rawSocket(`${url}${WEBHOOK_PATH}`);
      await socket.connected;
      await socket.write(`PUT ${WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n`);
      expect(await socket.status()).toBe(405);
      expect(socket.received().toLowerCase()).not.toContain('connection: close');
      socket.destroy();
    });
  });

  it('closes the connection of a delivery the shutdown cut off, as its own answers then do', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const started = deferred();
    webhooks.onAny(() => {
      started.resolve();
      return new Promise(() => undefined);
    });
    await withApp(webhooks, true, async (url, seen) => {
      const socket = rawSocket(`${url}${WEBHOOK_PATH}`);
      await socket.connected;
      const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      // All of it read, on a keep-alive connection: only the shutdown is a reason to close it.
      await socket.write(requestHead(WEBHOOK_PATH, { ...headers, 'Content-Length': String(Buffer.byteLength(body)) }) + body);
      await started.promise;
      await webhooks.close({ timeout: 0.1 });
      expect(await socket.status()).toBe(503);
      expect(socket.received().toLowerCase()).toContain('\r\nconnection: close\r\n');
      expect(seen).toMatchObject([{ err: { code: 'shutting_down' } }]);
      socket.destroy();
    });
  });

  it('lets Express’s own error handler answer with the error’s status, Allow included on a 405', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    await withApp(webhooks, false, async (url) => {
      const forged = await send(url, signedDelivery({ event: 'dispatch.completed', secret: 'whsec_other' }));
      expect(forged.status).toBe(401);
      const put = await send(url, { method: 'PUT', headers: {}, body: '' });
      expect(put.status).toBe(405);
      expect(put.headers.allow).toBe('POST');
    });
  });

  it.each([
    ['409 in_flight', 409, 'in_flight'],
    ['500 handler_failed', 500, 'handler_failed'],
    ['503 replay_store_unavailable', 503, 'replay_store_unavailable'],
  ])('passes %s too', async (_label, status, code) => {
    const downStore: ReplayStore = {
      claim: async () => {
        throw new Error('down');
      },
      complete: async () => {},
      release: async () => {},
    };
    const webhooks = new MitpoWebhooks({ secret: SECRET, ...(code === 'replay_store_unavailable' ? { replay: downStore } : {}) });
    const gate = deferred();
    const entered = deferred();
    webhooks.on('dispatch.completed', async () => {
      if (code === 'handler_failed') throw new Error('boom');
      entered.resolve();
      await gate.promise;
    });
    await withApp(webhooks, true, async (url, seen) => {
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      let first: Promise<unknown> | undefined;
      if (code === 'in_flight') {
        first = send(url, delivery);
        await entered.promise;
      }
      const reply = await send(url, delivery);
      gate.resolve();
      await first;
      expect(reply.status).toBe(status);
      expect(reply.json).toEqual({ handledBy: 'the app', code });
      expect(seen).toHaveLength(1);
    });
  });
});

// Found in a hunt: the middleware's `.catch(next)` also caught a throw from the app's own `next`
// (plain node:http, whose `next` is the app's code) and called `next` a second time with it.
// In a process of its own: what surfaces there is the process's to see, not Jest's.
describe('middleware({ passErrors: true }) with a next that throws (plain node:http)', () => {
  it('calls next once, and the app’s own throw surfaces as it is', async () => {
    const child = fork(path.join(__dirname, '../helpers/throwing-next-receiver.ts'), [], {
      execArgv: ['-r', 'ts-node/register/transpile-only'],
      env: { ...process.env, SECRET },
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      const { port } = await new Promise<{ port: number }>((resolve) => child.once('message', resolve as never));
      const forged = await send(`http://127.0.0.1:${port}`, signedDelivery({ event: 'dispatch.completed', secret: 'whsec_other' }));
      expect(forged.status).toBe(500);
      expect(await exited).toBe(0);
      expect(output.trim().split('\n')).toEqual(['next called with invalid_signature', 'surfaced: the app’s error handler broke']);
    } finally {
      child.kill();
    }
  });
});
