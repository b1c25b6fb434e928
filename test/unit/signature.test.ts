import { execFileSync } from 'node:child_process';
import crypto, { createHmac } from 'node:crypto';
import http from 'node:http';
import { Readable } from 'node:stream';
import express from 'express';
import { MitpoWebhooks, sign, verifySignature } from '../../src';
import { readNodeBody, type NodeRequest } from '../../src/body/read-node-body';
import { signedDelivery } from '../../src/testing';
import { deliver } from '../helpers/deliver';
import { send } from '../helpers/http-client';
import { listen } from '../helpers/servers';

const SECRET = 'whsec_a1b2c3d4e5';
const BODIES = [
  '{"event":"dispatch.completed","timestamp":"2026-03-22T10:30:00Z","data":{"dispatch_id":"dsp_a1b2c3d4","channel":"meta_ads","status":"completed","provider_resource_id":"23851234567890"}}',
  '{"event":"dispatch.failed","timestamp":"2026-03-22T10:30:00Z","data":{"dispatch_id":"dsp_ü€","channel":"メタ広告","status":"failed 😀"}}',
  '',
];

function pythonHmac(body: string, secret: string): string {
  return execFileSync(
    'python3',
    ['-c', 'import hmac,hashlib,sys; d=sys.stdin.buffer.read(); print(hmac.new(sys.argv[1].encode("utf-8"), d, hashlib.sha256).hexdigest())', secret],
    { input: Buffer.from(body, 'utf8') },
  )
    .toString()
    .trim();
}

function opensslHmac(body: string, secret: string): string {
  const out = execFileSync('openssl', ['dgst', '-sha256', '-hmac', secret], { input: Buffer.from(body, 'utf8') }).toString();
  return out.trim().split(/\s+/).pop()!;
}

/** The reference's own snippet, word for word in behaviour: a string comparison of the whole header. */
function seedVerifyWebhook(body: string | Buffer, signature: string, secret: string): boolean {
  const expected = createHmac('sha256', secret).update(body).digest('hex');
  return `sha256=${expected}` === signature;
}

describe('sign and verifySignature', () => {
  it.each(BODIES.map((b, i) => [i, b]))('agree with Python hmac and openssl dgst on body %i (multi-byte included)', (_i, body) => {
    const header = sign(body as string, SECRET);
    expect(header).toBe(`sha256=${pythonHmac(body as string, SECRET)}`);
    expect(header).toBe(`sha256=${opensslHmac(body as string, SECRET)}`);
    expect(verifySignature(Buffer.from(body as string, 'utf8'), header, SECRET)).toBe(true);
  });

  it.each(BODIES.map((b, i) => [i, b]))("agree with the MITPO reference's verifyWebhook snippet on body %i", (_i, body) => {
    const header = sign(body as string, SECRET);
    expect(seedVerifyWebhook(body as string, header, SECRET)).toBe(true);
    const other = sign(`${body as string} `, SECRET);
    expect(seedVerifyWebhook(body as string, other, SECRET)).toBe(false);
    expect(verifySignature(body as string, other, SECRET)).toBe(false);
  });

  it('signs with the whole secret, whsec_ prefix included', () => {
    const body = BODIES[0]!;
    expect(sign(body, SECRET)).not.toBe(sign(body, SECRET.slice('whsec_'.length)));
    expect(sign(body, SECRET)).toBe(`sha256=${createHmac('sha256', 'whsec_a1b2c3d4e5').update(body).digest('hex')}`);
  });

  it('accepts any of several secrets, for rotation without downtime', () => {
    const header = sign(BODIES[0]!, 'whsec_old');
    expect(verifySignature(BODIES[0]!, header, ['whsec_new', 'whsec_old'])).toBe(true);
    expect(verifySignature(BODIES[0]!, header, ['whsec_new'])).toBe(false);
  });

  it('refuses every variant MITPO would not send, never throwing', () => {
    const body = BODIES[0]!;
    const good = sign(body, SECRET);
    const junk: unknown[] = [
      undefined,
      null,
      '',
      'sha256=',
      good.toUpperCase(),
      `sha256=${good.slice(7).toUpperCase()}`,
      good.slice(0, -1),
      `${good}0`,
      `sha1=${good.slice(7)}`,
      good.slice(7),
      [good, good],
      [good],
      `${good}, ${good}`,
      ` ${good}`,
      42,
      { toString: () => good },
    ];
    for (const header of junk) {
      expect(verifySignature(body, header as string, SECRET)).toBe(false);
    }
    for (const secrets of [[], '', ' whsec_x', null, undefined, 7, [7], ['']]) {
      expect(() => verifySignature(body, good, secrets as string)).not.toThrow();
      expect(verifySignature(body, good, secrets as string)).toBe(false);
    }
    expect(verifySignature(42 as unknown as string, good, SECRET)).toBe(false);
  });

  it('compares all 64 hex digits: a signature wrong in one digit only, anywhere, is refused', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const good = delivery.headers['X-MITPO-Signature']!;
    const hex = good.slice('sha256='.length);
    for (const at of [0, 31, 32, 63]) {
      const flipped = `sha256=${hex.slice(0, at)}${hex[at] === '0' ? '1' : '0'}${hex.slice(at + 1)}`;
      expect(verifySignature(delivery.body, flipped, SECRET)).toBe(false);
      const { status, body } = await deliver(webhooks, { body: delivery.body, headers: { ...delivery.headers, 'X-MITPO-Signature': flipped } });
      expect({ status, code: (body as { error?: { code?: string } }).error?.code }).toEqual({ status: 401, code: 'invalid_signature' });
    }
  });

  it('refuses to sign with a secret padded by whitespace, without echoing it', () => {
    expect(() => sign('{}', ' whsec_padded ')).toThrow(TypeError);
    expect(() => sign('{}', ' whsec_padded ')).toThrow(/whitespace/);
    try {
      sign('{}', ' whsec_padded ');
    } catch (error) {
      expect((error as Error).message).not.toContain('whsec_padded');
    }
  });

  it('hashes the bytes as received when a multi-byte character is split across stream chunks', async () => {
    const body = Buffer.from(BODIES[1]!, 'utf8');
    const cut = body.indexOf(Buffer.from('€')) + 1;
    const stream = Readable.from([body.subarray(0, cut), body.subarray(cut, cut + 1), body.subarray(cut + 1)], {
      objectMode: false,
    }) as unknown as NodeRequest;
    const raw = await readNodeBody(stream, { limit: 1 << 20, timeoutSeconds: 60, contentLength: body.length });
    expect(raw.equals(body)).toBe(true);
    expect(verifySignature(raw, sign(BODIES[1]!, SECRET), SECRET)).toBe(true);
  });

  it('signs bytes exactly as it signs the same text, from a Buffer or a plain Uint8Array', () => {
    const body = BODIES[1]!;
    const expected = sign(body, SECRET);
    const bytes = Buffer.from(body, 'utf8');
    expect(sign(bytes, SECRET)).toBe(expected);
    expect(sign(new Uint8Array(bytes), SECRET)).toBe(expected);
    expect(sign(bytes.subarray(0, -1), SECRET)).not.toBe(expected);
  });

  it.each([
    ['a number', 42],
    ['null', null],
    ['undefined', undefined],
    ['a parsed object', { event: 'dispatch.completed' }],
    ['an array of strings', ['{}']],
    ['an ArrayBuffer', new ArrayBuffer(2)],
    ['a String object', new String('{}')],
  ])('refuses to sign a payload that is %s, with a TypeError naming the payload', (_name, payload) => {
    expect(() => sign(payload as unknown as string, SECRET)).toThrow(TypeError);
    expect(() => sign(payload as unknown as string, SECRET)).toThrow('sign(payload, secret): payload must be a string, Buffer or Uint8Array');
  });
});

describe('verifySignature never throws', () => {
  it('answers false for a payload whose buffer was detached', () => {
    const payload = new Uint8Array(Buffer.from('{"event":"x"}'));
    const header = sign(Buffer.from(payload), SECRET);
    structuredClone(payload.buffer, { transfer: [payload.buffer] });
    expect(() => verifySignature(payload, header, SECRET)).not.toThrow();
    expect(verifySignature(payload, header, SECRET)).toBe(false);
  });
});

describe('the HMAC key', () => {
  it('verifies every delivery through node:crypto createHmac with a KeyObject, not a string or hand-built pads', async () => {
    const createHmacSpy = jest.spyOn(crypto, 'createHmac');
    try {
      const webhooks = new MitpoWebhooks({ secret: SECRET });
      const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
      createHmacSpy.mockClear();
      expect((await deliver(webhooks, delivery)).status).toBe(200);
      expect(createHmacSpy).toHaveBeenCalledTimes(1);
      expect(createHmacSpy.mock.calls[0]![0]).toBe('sha256');
      expect(createHmacSpy.mock.calls[0]![1]).toBeInstanceOf(crypto.KeyObject);
    } finally {
      createHmacSpy.mockRestore();
    }
  });

  it("leaves no copy of the secret's bytes in the Buffer pool slab that later small Buffers are cut from", () => {
    const secret = `whsec_${crypto.randomUUID()}`;
    // Buffer.alloc is never cut from the pool, so the needle cannot be what it finds.
    const needle = Buffer.alloc(secret.length);
    needle.write(secret);
    new MitpoWebhooks({ secret });
    const slab = Buffer.from(Buffer.from('x').buffer);
    expect(slab.includes(needle)).toBe(false);
  });

  it('leaves no key-derived pad block in the Buffer pool slab that ctx.rawBody is cut from', async () => {
    // Buffer.alloc is never cut from the pool, so the test's own pads cannot be what it finds.
    const innerPad = Buffer.alloc(64, 0x36);
    const outerPad = Buffer.alloc(64, 0x5c);
    for (let i = 0; i < SECRET.length; i++) {
      innerPad[i] = SECRET.charCodeAt(i) ^ 0x36;
      outerPad[i] = SECRET.charCodeAt(i) ^ 0x5c;
    }
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const slabs: Buffer[] = [];
    webhooks.onAny((_event, ctx) => void slabs.push(Buffer.from(ctx.rawBody.buffer)));
    const app = express();
    app.post('/webhooks/mitpo', webhooks.middleware());
    const server = await listen(http.createServer(app));
    try {
      for (let i = 0; i < 5; i++) {
        const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
        expect((await send(server.url, { headers, body })).status).toBe(200);
      }
    } finally {
      await server.close();
    }
    expect(slabs).toHaveLength(5);
    for (const slab of slabs) {
      expect(slab.includes(innerPad)).toBe(false);
      expect(slab.includes(outerPad)).toBe(false);
    }
  });
});
