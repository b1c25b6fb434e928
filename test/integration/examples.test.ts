import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createConnectApp } from '../../examples/connect-receiver';
import { createReceiverApp } from '../../examples/express-receiver';
import { createFastifyApp } from '../../examples/fastify-receiver';
import { createKoaApp } from '../../examples/koa-receiver';
import { createNodeHttpServer } from '../../examples/node-http-receiver';
import { sendDelivery, signedDelivery } from '../../src/testing';
import { send } from '../helpers/http-client';

const SECRET = 'whsec_examples';
const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

/**
 * A child's stdout and stderr as they arrive. until(pattern) resolves once the
 * output so far matches, and rejects if the child exits first; a line that never
 * comes is bounded by the test's own timeout.
 */
function watchOutput(child: ChildProcessWithoutNullStreams) {
  let output = '';
  let waiting: Array<() => void> = [];
  const onData = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    const checks = waiting;
    waiting = [];
    for (const check of checks) check();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const until = (pattern: RegExp) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      let settled = false;
      const check = () => {
        if (settled) return;
        const found = pattern.exec(output);
        if (found) {
          settled = true;
          resolve(found);
        } else {
          waiting.push(check);
        }
      };
      void exited.then(() => {
        if (!settled) reject(new Error(`the example exited before printing ${pattern}: ${output}`));
        settled = true;
      });
      check();
    });
  return { until, exited, output: () => output };
}

describe('the examples', () => {
  it('express-receiver: routes each event type to its handler', async () => {
    const ran: string[] = [];
    const { app } = createReceiverApp({ secret: SECRET }, (handler) => ran.push(handler));
    expect((await sendDelivery(app, { event: 'dispatch.completed', secret: SECRET })).status).toBe(200);
    expect((await sendDelivery(app, { event: 'connection.active', secret: SECRET })).status).toBe(200);
    expect((await sendDelivery(app, { event: 'dispatch.cancelled', secret: SECRET })).status).toBe(200);
    expect(ran).toEqual(['on(dispatch.completed)', 'on(connection.active)', 'onAny']);
  });

  it('connect-receiver: handles its path and answers 404 elsewhere', async () => {
    const lines: string[] = [];
    const app = createConnectApp(SECRET, (line) => lines.push(line), silent);
    expect((await sendDelivery(app, { event: 'dispatch.completed', secret: SECRET })).status).toBe(200);
    expect((await sendDelivery(app, { event: 'connection.reauth_required', secret: SECRET })).status).toBe(200);
    expect((await sendDelivery(app, { event: 'dispatch.completed', secret: SECRET }, { path: '/other' })).status).toBe(404);
    expect(lines).toEqual([
      expect.stringMatching(/^dispatch dsp_[0-9a-f]{16} completed$/),
      expect.stringMatching(/^connection con_[0-9a-f]{16} needs re-authentication$/),
    ]);
  });

  it('node-http-receiver: verifies and hands every event to onAny, refusing forgeries', async () => {
    const lines: string[] = [];
    const server = createNodeHttpServer(SECRET, (line) => lines.push(line), silent);
    expect((await sendDelivery(server, { event: 'dispatch.failed', secret: SECRET })).status).toBe(200);
    expect((await sendDelivery(server, signedDelivery({ event: 'dispatch.failed', secret: 'whsec_forged' }))).status).toBe(401);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^dispatch\.failed \(delivery [0-9a-f]{12}…\)$/);
  });

  it('fastify-receiver: serves deliveries while its other routes keep JSON parsing', async () => {
    const lines: string[] = [];
    const app = await createFastifyApp(SECRET, (line) => lines.push(line));
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
      expect((await sendDelivery(`${base}/webhooks/mitpo`, { event: 'dispatch.completed', secret: SECRET })).status).toBe(200);
      const order = await send(`${base}/orders`, { headers: { 'content-type': 'application/json' }, body: '{"sku":"A1"}' });
      expect(JSON.parse(order.text)).toEqual({ received: { sku: 'A1' } });
      expect(lines).toEqual([expect.stringMatching(/^dispatch dsp_[0-9a-f]{16} completed$/)]);
    } finally {
      await app.close();
    }
  });

  it('koa-receiver: serves deliveries mounted before its body parser, which other paths still get', async () => {
    const lines: string[] = [];
    const { app } = createKoaApp(SECRET, (line) => lines.push(line));
    const server = http.createServer(app.callback());
    expect((await sendDelivery(server, { event: 'connection.active', secret: SECRET })).status).toBe(200);
    expect(lines).toEqual([expect.stringMatching(/^connection con_[0-9a-f]{16}: connection.active$/)]);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      const order = await send(`${base}/orders`, { headers: { 'content-type': 'application/json' }, body: '{"sku":"B2"}' });
      expect(JSON.parse(order.text)).toEqual({ received: { sku: 'B2' } });
    } finally {
      server.close();
    }
  });

  it.each(['express', 'fastify'])(
    'nestjs-receiver on %s: runs its @OnMitpoEvent handlers, and its own route keeps Nest\'s JSON parsing',
    async (platform) => {
      // NestJS 12 is ESM only, so the example runs as a user runs it: in its own process, on the build.
      const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'examples/nestjs-receiver.ts'], {
        cwd: path.join(__dirname, '../..'),
        env: { ...process.env, MITPO_WEBHOOK_SECRET: SECRET, PORT: '0', PLATFORM: platform },
      });
      const watched = watchOutput(child);
      try {
        const url = (await watched.until(/Receiving MITPO webhooks on (\S+)/))[1]!;
        expect((await sendDelivery(url, { event: 'dispatch.completed', secret: SECRET })).status).toBe(200);
        expect((await sendDelivery(url, { event: 'dispatch.failed', secret: SECRET })).status).toBe(200);
        // The 200 can reach this process before the handler's line does (two pipes):
        // wait for each line rather than expect it at the moment of the answer.
        await watched.until(/dispatch dsp_[0-9a-f]{16} completed\n/);
        await watched.until(/dispatch dsp_[0-9a-f]{16} is failed\n/);
        expect(watched.output()).toMatch(/dispatch dsp_[0-9a-f]{16} completed\n/);
        expect(watched.output()).toMatch(/dispatch dsp_[0-9a-f]{16} is failed\n/);
        const order = await send(url.replace('/webhooks/mitpo', '/api/orders'), {
          headers: { 'content-type': 'application/json' },
          body: '{"sku":"C3"}',
        });
        expect(JSON.parse(order.text)).toEqual({ received: { sku: 'C3' } });
      } finally {
        child.kill('SIGTERM');
      }
      await watched.exited;
    },
    30_000,
  );

  it("the README's \"Testing your handlers\" snippet is examples/testing-your-handlers.test.ts, which runs in this suite", () => {
    const root = path.join(__dirname, '../..');
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const example = readFileSync(path.join(root, 'examples/testing-your-handlers.test.ts'), 'utf8');
    const section = readme.split('## Testing your handlers')[1]?.split('\n## ')[0] ?? '';
    const snippet = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    expect(snippet).toBe(example);
  });
});
