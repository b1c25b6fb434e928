import { WebhookVerificationError } from '../errors';
import { withTimeout } from '../with-timeout';
import { bodyAlreadyParsed, bodyReadFailed, bodyTimedOut, payloadTooLarge, type BodyReadOptions } from './body-errors';

/**
 * The raw bytes of a Fetch `Request`, read from its stream so the limit holds
 * while the bytes arrive (`arrayBuffer()` would take a body of any size first).
 * A body already read, or locked by another reader, is refused at once: it can
 * never be read again. A stream that yields anything but bytes is refused at
 * the first such chunk, so the limit cannot be sidestepped by counting
 * characters instead of bytes.
 *
 * @throws WebhookVerificationError `payload_too_large`, `body_already_parsed`, `body_read_failed` or `body_timeout`
 */
export async function readFetchBody(request: Request, options: BodyReadOptions): Promise<Uint8Array> {
  const { limit, contentLength } = options;
  // The contract's order: a declared size past the limit (413) before a consumed body (500).
  if (contentLength !== undefined && contentLength > limit) throw payloadTooLarge(limit);
  if (request.bodyUsed || request.body?.locked === true) throw bodyAlreadyParsed('fetch');
  const reader = request.body?.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (reader !== undefined) {
    try {
      await withTimeout(
        (async () => {
          for (let read = await reader.read(); !read.done; read = await reader.read()) {
            const chunk: unknown = read.value;
            if (!(chunk instanceof Uint8Array)) throw bodyReadFailed('The request body stream yielded something other than bytes');
            size += chunk.byteLength;
            if (size > limit) throw payloadTooLarge(limit);
            chunks.push(chunk);
          }
        })(),
        options.timeoutSeconds * 1000,
        () => bodyTimedOut(options.timeoutSeconds),
      );
    } catch (error) {
      // Tell the source to stop sending: a refused body is never read to its end.
      reader.cancel().catch(() => undefined);
      if (error instanceof WebhookVerificationError) throw error;
      throw bodyReadFailed('The request body could not be read', error);
    }
  }
  if (contentLength !== undefined && size !== contentLength) throw bodyReadFailed('The body length did not match Content-Length');
  return joined(chunks, size);
}

/** The chunks as one run of bytes; a body that came in one chunk is not copied. */
function joined(chunks: readonly Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}
