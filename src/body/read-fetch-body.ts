import { WebhookVerificationError } from '../errors';
import { payloadTooLarge } from './size-limit';

/**
 * The raw bytes of a Fetch `Request`, read from its stream so the limit holds
 * while the bytes arrive (`arrayBuffer()` would take a body of any size first).
 * A body already read is refused at once: it can never be read again.
 */
export async function readFetchBody(
  request: Request,
  limit: number,
  contentLength: number | undefined,
  timeoutMs: number,
): Promise<Buffer> {
  if (request.bodyUsed) {
    throw new WebhookVerificationError(
      'body_already_parsed',
      'The Request body was already read (e.g. by request.json()), so its raw bytes cannot be verified. ' +
        'Pass the Request to the handler before anything reads it, or clone() it first.',
    );
  }
  if (contentLength !== undefined && contentLength > limit) throw payloadTooLarge(limit);
  if (request.body === null) return Buffer.alloc(0);

  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new WebhookVerificationError('body_timeout', `The body did not arrive within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), timedOut]);
      if (done) break;
      size += value.byteLength;
      if (size > limit) throw payloadTooLarge(limit);
      chunks.push(value);
    }
  } catch (error) {
    reader.cancel().catch(() => undefined);
    if (error instanceof WebhookVerificationError) throw error;
    throw new WebhookVerificationError('body_read_failed', 'The request body could not be read', { cause: error });
  } finally {
    clearTimeout(timer);
  }
  return Buffer.concat(chunks, size);
}

