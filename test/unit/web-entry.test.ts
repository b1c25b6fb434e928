import { createHash } from 'node:crypto';
import { runInThisContext } from 'node:vm';
import * as node from '../../src';
import * as web from '../../src/web';
import { MemoryDeliveryQueue, signedDelivery } from '../../src/testing';
import { CHECK_CASES, expectAnswer } from '../helpers/check-cases';
import { createChecksApp, SECRET } from '../edge/checks-app';
import type { Reply } from '../helpers/http-client';

// mitpo-webhooks/web on Node (the same code runs under Node 20+), in-process:
// what the runtimes' tests (test/edge/) check over HTTP, plus what only shows here.

/** A Fetch Response as the table's expectAnswer() reads replies. */
async function replyOf(response: Response): Promise<Reply> {
  const text = await response.text();
  return { status: response.status, headers: Object.fromEntries(response.headers), text, json: JSON.parse(text) as Reply['json'] };
}

describe('mitpo-webhooks/web on Node', () => {
  const app = createChecksApp();
  const rows = CHECK_CASES.filter((check) => !check.skipFor?.includes('fetch'));
  const profileOf = (check: (typeof rows)[number]) =>
    check.setup ? 'throwing-handler' : check.options?.limit ? 'limit-1kb' : check.options?.replay ? 'unreachable-replay' : 'plain';

  it.each(rows.map((check, index) => ({ ...check, index })))('answers the checks table through fetchHandler(): $name → $status $outcome', async (check) => {
    const id = `row-${check.index}`;
    const spec = check.request();
    const request = () =>
      new Request(`http://localhost/deliver/${profileOf(check)}/${id}`, {
        method: spec.method ?? 'POST',
        headers: spec.headers as Record<string, string>,
        body: typeof spec.body === 'string' ? spec.body : new Uint8Array(spec.body),
      });
    if (check.sendTwice) expect((await app.fetch(request())).status).toBe(200);
    expectAnswer(check, await replyOf(await app.fetch(request())));
    const runs = (await (await app.fetch(new Request(`http://localhost/runs/${id}`))).json()) as Array<{ rawBody: string }> | null;
    expect(runs ?? []).toHaveLength(check.runs);
    // A Uint8Array, not Node's Buffer (a subclass): what handlers get on every runtime.
    for (const run of runs ?? []) expect(run.rawBody).toBe(`Uint8Array/${Buffer.byteLength(spec.body)}`);
  });

  it('signs as the Node entry does, and verifySignature() tells a match from anything else without rejecting', async () => {
    const body = '{"event":"dispatch.completed","note":"héllo ✓"}';
    const header = node.sign(body, SECRET);
    expect(await web.sign(body, SECRET)).toBe(header);
    expect(await web.sign(new TextEncoder().encode(body), SECRET)).toBe(header);
    expect(await web.verifySignature(body, header, SECRET)).toBe(true);
    expect(await web.verifySignature(Buffer.from(body), header, ['whsec_old_one', SECRET])).toBe(true);
    expect(await web.verifySignature(body.replace('é', 'e'), header, SECRET)).toBe(false);
    expect(await web.verifySignature(body, header, 'whsec_someone_else')).toBe(false);
    expect(await web.verifySignature(body, header.toUpperCase(), SECRET)).toBe(false);
    expect(await web.verifySignature(body, [header, header], SECRET)).toBe(false);
    expect(await web.verifySignature(body, undefined, SECRET)).toBe(false);
    expect(await web.verifySignature(body, header, ' padded ')).toBe(false);
    expect(await web.verifySignature({ not: 'bytes' } as never, header, SECRET)).toBe(false);
  });

  it('refuses an unusable secret or payload to sign() with a rejected promise, as its type says, never a throw', async () => {
    const signing = (payload: unknown, secret: string) => {
      try {
        return web.sign(payload as string, secret);
      } catch (error) {
        return `threw ${String(error)}`;
      }
    };
    await expect(signing('x', '')).rejects.toThrow(TypeError);
    await expect(signing('x', 'whsec_')).rejects.toThrow(TypeError);
    await expect(signing(42, SECRET)).rejects.toThrow(/payload must be a string or a Uint8Array/);
  });

  it("reads header values without the spaces and tabs around them, as Node's HTTP parser does (workerd hands them on)", async () => {
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const padded = Object.fromEntries(Object.entries(delivery.headers).map(([name, value]) => [name, ` ${value} \t`]));
    // A Fetch Headers as workerd's behaves: undici's (Node's) strips the whitespace on the way in.
    const workerdHeaders = { get: (name: string) => padded[name] ?? null, entries: () => Object.entries(padded)[Symbol.iterator]() };
    const shapes = [
      ['Node, plain object', new node.MitpoWebhooks({ secret: SECRET }), padded],
      ['Web, plain object', new web.MitpoWebhooks({ secret: SECRET }), padded],
      ["Web, workerd's Headers", new web.MitpoWebhooks({ secret: SECRET }), workerdHeaders],
    ] as const;
    for (const [shape, webhooks, headers] of shapes) {
      const answer = await webhooks.receive({ rawBody: delivery.body, headers: headers as never });
      expect([shape, answer]).toEqual([shape, { status: 200, body: { success: true } }]);
    }
  });

  it("verifies, keys and signs bytes on a SharedArrayBuffer, which WebCrypto does not take, as the Node entry does", async () => {
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const bytes = Buffer.from(delivery.body);
    // Node's own SharedArrayBuffer: Jest's sandbox has another, which WebCrypto does not recognise.
    const NodeSharedArrayBuffer = runInThisContext('SharedArrayBuffer') as typeof SharedArrayBuffer;
    const memory = new NodeSharedArrayBuffer(bytes.byteLength);
    new Uint8Array(memory).set(bytes);
    const header = delivery.headers['X-MITPO-Signature'];
    // A Buffer too, whose slice() is a view on the same memory, not a copy.
    for (const shared of [new Uint8Array(memory), Buffer.from(memory)]) {
      expect(await new web.MitpoWebhooks({ secret: SECRET }).receive({ rawBody: shared, headers: delivery.headers })).toEqual({ status: 200, body: { success: true } });
      expect(await web.verifySignature(shared, header, SECRET)).toBe(true);
      expect(await web.sign(shared, SECRET)).toBe(header);
    }
  });

  it('refuses the queue option, whose workers are Node-only, and unknown options', () => {
    const queue = new MemoryDeliveryQueue();
    expect(() => new web.MitpoWebhooks({ secret: SECRET, queue } as never)).toThrow(/queue option is not available on Web runtimes/);
    expect(() => new web.MitpoWebhooks({ secret: SECRET, middleware: true } as never)).toThrow(/unknown option "middleware"/);
  });

  it("keys a delivery by the SHA-256 of its bytes, the Node entry's key, and hands a deliveryKey option the bytes as a Uint8Array", async () => {
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const keys: string[] = [];
    const seen: Uint8Array[] = [];
    const byDefault = new web.MitpoWebhooks({ secret: SECRET }).onAny((_event, ctx) => void keys.push(ctx.deliveryKey));
    expect((await byDefault.receive({ rawBody: delivery.body, headers: delivery.headers })).status).toBe(200);
    expect(keys).toEqual([createHash('sha256').update(delivery.body).digest('hex')]);

    const custom = new web.MitpoWebhooks({
      secret: SECRET,
      deliveryKey: (event, rawBody) => {
        seen.push(rawBody);
        return `${event.event}:${rawBody.byteLength}`;
      },
    });
    expect(await custom.receive({ rawBody: delivery.body, headers: delivery.headers })).toEqual({ status: 200, body: { success: true } });
    expect(await custom.receive({ rawBody: delivery.body, headers: delivery.headers })).toEqual({ status: 200, body: { success: true, duplicate: true } });
    expect(Object.getPrototypeOf(seen[0])).toBe(Uint8Array.prototype);
  });

  it('verifies with secrets from a function (a rotation), importing each key once per fetch of the secrets', async () => {
    let calls = 0;
    const webhooks = new web.MitpoWebhooks({
      secret: async () => {
        calls += 1;
        return ['whsec_new_secret', SECRET];
      },
    });
    const delivery = signedDelivery({ event: 'dispatch.failed', secret: SECRET });
    const event = await webhooks.verify({ rawBody: delivery.body, headers: delivery.headers });
    expect(event.event).toBe('dispatch.failed');
    await webhooks.verify({ rawBody: delivery.body, headers: delivery.headers });
    expect(calls).toBe(1);
    const forged = signedDelivery({ event: 'dispatch.failed', secret: 'whsec_someone_else' });
    await expect(webhooks.verify({ rawBody: forged.body, headers: forged.headers })).rejects.toMatchObject({ code: 'invalid_signature' });
  });

  it('refuses signed bytes that are not UTF-8, or carry a byte-order mark, as the Node entry does', async () => {
    const webhooks = new web.MitpoWebhooks({ secret: SECRET, replay: false });
    const nodeWebhooks = new node.MitpoWebhooks({ secret: SECRET, replay: false });
    const json = signedDelivery({ event: 'dispatch.completed', secret: SECRET }).body;
    for (const bytes of [Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(json)])]) {
      const headers = { ...signedDelivery({ event: 'dispatch.completed', secret: SECRET }).headers, 'X-MITPO-Signature': node.sign(bytes, SECRET) };
      const answer = await webhooks.receive({ rawBody: new Uint8Array(bytes), headers });
      expect(answer).toEqual(await nodeWebhooks.receive({ rawBody: bytes, headers }));
      expect(answer.body).toMatchObject({ error: { code: 'invalid_json' } });
    }
  });

  it('answers 503 shutting_down once close() was called, through fetchHandler()', async () => {
    const webhooks = new web.MitpoWebhooks({ secret: SECRET });
    await webhooks.close({ timeout: 1 });
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const response = await webhooks.fetchHandler()(new Request('http://localhost/', { method: 'POST', headers: delivery.headers, body: delivery.body }));
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: { code: 'shutting_down' } });
  });

  it('keeps order with ordering: true, as on Node: a retried acceptance after the completion is 200 stale and told to onStale', async () => {
    const stale: string[] = [];
    const applied: string[] = [];
    const receiver = new web.MitpoWebhooks({ secret: SECRET, ordering: true })
      .on(['dispatch.accepted', 'dispatch.completed'], (event) => void applied.push(event.event))
      .onStale((event) => void stale.push(event.event));
    const at = Date.now() - 60_000;
    const event = (name: 'dispatch.accepted' | 'dispatch.completed', ms: number) =>
      signedDelivery({ event: name, secret: SECRET, timestamp: new Date(at + ms), data: { dispatch_id: 'd1', channel: 'email', status: name } });
    const completed = event('dispatch.completed', 10_000);
    expect((await receiver.receive({ rawBody: completed.body, headers: completed.headers })).body).toEqual({ success: true });
    const accepted = event('dispatch.accepted', 5_000);
    expect((await receiver.receive({ rawBody: accepted.body, headers: accepted.headers })).body).toEqual({ success: true, stale: true });
    expect(applied).toEqual(['dispatch.completed']);
    expect(stale).toEqual(['dispatch.accepted']);
  });
});

