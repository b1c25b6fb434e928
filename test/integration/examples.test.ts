import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createConnectApp } from '../../examples/connect-receiver';
import { createReceiverApp } from '../../examples/express-receiver';
import { createNodeHttpServer } from '../../examples/node-http-receiver';
import { sendDelivery, signedDelivery } from '../../src/testing';

const SECRET = 'whsec_examples';
const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

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

  it("the README's \"Testing your handlers\" snippet is examples/testing-your-handlers.test.ts, which runs in this suite", () => {
    const root = path.join(__dirname, '../..');
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const example = readFileSync(path.join(root, 'examples/testing-your-handlers.test.ts'), 'utf8');
    const section = readme.split('## Testing your handlers')[1]?.split('\n## ')[0] ?? '';
    const snippet = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    expect(snippet).toBe(example);
  });
});
