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

  // Found in a mutation hunt: only a stream read to its end was tried. Read in part, the rest
  // would be verified as the body, and the 401 would blame the sender for the app's read.
  it('refuses a stream someone already read part of, at once, rather than reading the rest as the body', async () => {
    const stream = new PassThrough();
    stream.write('{"event":');
    stream.read();
    stream.end('"dispatch.completed"}');
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

  // Found in a mutation hunt: the bound was only tried far past it.
  it('takes a body without a Content-Length in exactly one chunk per 256 bytes of limit (1024 at least), and refuses one more', async () => {
    const inChunks = (count: number) => Readable.from(Array.from({ length: count }, () => Buffer.from(' ')), { objectMode: false });
    expect((await read(inChunks(1024), 2048)).body?.byteLength).toBe(1024);
    expect((await read(inChunks(1025), 2048)).error?.message).toBe('The body came in more than 1024 chunks, more than its size warrants');
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
  // Found in a hunt: middleware that calls req.pause() and then next() left the stream paused, which
  // raw-body does not undo, and the 408 that followed blamed the sender for a body that had arrived.
  it("names a stream paused before it was read, and never resumed, as the app's doing when the body times out", async () => {
    jest.useFakeTimers();
    try {
      const stream = new PassThrough();
      stream.end('{}');
      stream.pause();
      const result = read(stream);
      jest.advanceTimersByTime(60_000);
      const { error } = await result;
      expect(error?.code).toBe('body_timeout');
      expect(error?.message).toBe(
        'The body did not arrive within bodyTimeout (60 s): the request stream was paused before it was read, and nothing resumed it (middleware that calls req.pause()?)',
      );
    } finally {
      jest.useRealTimers();
    }
  });

  it('blames no middleware when a sender is slow: its stream is flowing, only short of bytes', async () => {
    jest.useFakeTimers();
    try {
      const stream = new PassThrough();
      const result = read(stream);
      stream.write('{"a"');
      jest.advanceTimersByTime(60_000);
      expect((await result).error?.message).toBe('The body did not arrive within bodyTimeout (60 s)');
    } finally {
      jest.useRealTimers();
    }
  });
});
