import { WebhookVerificationError } from '../errors';
import { payloadTooLarge } from './size-limit';
import type { BodyDeadlines } from './body-deadlines';

/**
 * The raw bytes of a Fetch `Request`, read from its stream so the limit holds
 * while the bytes arrive (`arrayBuffer()` would take a body of any size first).
 * A body already read is refused at once: it can never be read again.
 */
export async function readFetchBody(
  request: Request,
  limit: number,
  contentLength: number | undefined,
  deadlines: BodyDeadlines,
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
  // On the same deadlines as Node reads: expiring cancels the stream, which ends the pending read.
  let expired: WebhookVerificationError | undefined;
  const deadline = deadlines.watch(() => {
    expired = new WebhookVerificationError('body_timeout', `The body did not arrive within ${deadlines.timeoutMs} ms`);
    reader.cancel(expired).catch(() => undefined);
  });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (expired !== undefined) throw expired;
      if (done) break;
      size += value.byteLength;
      if (size > limit) throw payloadTooLarge(limit);
      chunks.push(value);
    }
  } catch (error) {
    reader.cancel().catch(() => undefined);
    if (expired !== undefined) throw expired;
    if (error instanceof WebhookVerificationError) throw error;
    throw new WebhookVerificationError('body_read_failed', 'The request body could not be read', { cause: error });
  } finally {
    deadlines.clear(deadline);
  }
  return Buffer.concat(chunks, size);
}

