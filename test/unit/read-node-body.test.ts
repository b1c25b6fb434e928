import { PassThrough, Readable } from 'node:stream';
import type { WebhookVerificationError } from '../../src';
import { readNodeBody, type NodeRequest } from '../../src/body/read-node-body';

type Read = { error?: WebhookVerificationError; body?: Buffer };

function read(stream: Readable, limit = 1024, contentLength?: number): Promise<Read> {
  return readNodeBody(stream as unknown as NodeRequest, { limit, timeoutSeconds: 60, contentLength }).then(
    (body) => ({ body }),
    (error: WebhookVerificationError) => ({ error }),
  );
}

describe('readNodeBody on a stream', () => {
  it('gives the bytes as a copy of their own, not a view into a chunk the app would keep alive', async () => {
    const chunk = Buffer.alloc(64, 0x61);
    const { body } = await read(Readable.from([chunk.subarray(0, 10)], { objectMode: false }), 1024, 10);
    expect(body?.toString()).toBe('a'.repeat(10));
    expect(body?.buffer).not.toBe(chunk.buffer);
  });

  it('refuses a stream with an encoding set, whose chunks are decoded text rather than the signed bytes', async () => {
    const stream = Readable.from([Buffer.from('{}')], { objectMode: false });
    stream.setEncoding('utf8');
    expect((await read(stream)).error?.code).toBe('body_already_parsed');
  });

  it('refuses a request already destroyed as aborted, without waiting', async () => {
    const stream = new PassThrough();
    stream.destroy();
    const { error } = await read(stream);
    expect(error?.code).toBe('body_read_failed');
    expect(error?.message).toContain('aborted');
  });

  it('stops at the limit while streaming, when no Content-Length warned of the size', async () => {
    const stream = new PassThrough();
    const result = read(stream, 100);
    stream.write(Buffer.alloc(60));
    stream.write(Buffer.alloc(60));
    expect((await result).error?.code).toBe('payload_too_large');
    expect(stream.isPaused()).toBe(true);
  });

  it('refuses a body shorter than its Content-Length', async () => {
    const { error } = await read(Readable.from([Buffer.from('{}')], { objectMode: false }), 1024, 5);
    expect(error?.code).toBe('body_read_failed');
    expect(error?.message).toContain('Content-Length');
  });

  it('turns a stream error into body_read_failed, naming an abort as one', async () => {
    const stream = new PassThrough();
    const result = read(stream);
    stream.write('{"a"');
    stream.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
    const { error } = await result;
    expect(error?.code).toBe('body_read_failed');
    expect(error?.message).toBe('The client aborted the request before the body ended');
  });
});
