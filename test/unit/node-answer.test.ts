import type { IncomingMessage } from 'node:http';
import { refusal, SUCCESS } from '../../src/answers';
import { WebhookVerificationError } from '../../src/errors';
import { nodeAnswer } from '../../src/adapters/node-answer';

describe('nodeAnswer', () => {
  const request = (httpVersionMajor: number, complete: boolean, readableEnded = false) => ({ httpVersionMajor, complete, readableEnded }) as IncomingMessage;

  // `complete`: the whole message has arrived, so nothing is left for Node to read, whether or not anyone read it.
  it('closes an HTTP/1 connection whose body has not all arrived, so a refused sender cannot make us drain it', () => {
    expect(nodeAnswer(request(1, false), SUCCESS).headers.connection).toBe('close');
    expect(nodeAnswer(request(1, true), SUCCESS).headers.connection).toBeUndefined();
  });

  it('keeps the connection of a request read to its end that Node never parsed (fastify.inject(), a hand-built IncomingMessage)', () => {
    expect(nodeAnswer(request(1, false, true), SUCCESS).headers.connection).toBeUndefined();
  });

  // A message can hold text from the request (a media type, an event name), sanitised but not ASCII.
  it('counts Content-Length in bytes, so an answer with non-ASCII text arrives whole', () => {
    const answer = nodeAnswer(request(1, true), refusal(new WebhookVerificationError('unsupported_media_type', 'Content-Type "application/jsön" is not JSON')));
    expect(answer.headers['content-length']).toBe(String(Buffer.byteLength(answer.json)));
    expect(Number(answer.headers['content-length'])).toBeGreaterThan(answer.json.length);
  });

  it('sends no Connection header over HTTP/2, which forbids it (the answer ends the stream there)', () => {
    expect(nodeAnswer(request(2, false), SUCCESS).headers).not.toHaveProperty('connection');
  });
});
