import { WebhookVerificationError } from '../errors';
import { withTimeout } from '../with-timeout';
import { bodyAlreadyParsed, bodyReadFailed, bodyTimedOut, mostChunksWithoutLength, payloadTooLarge, tooManyChunks, type BodyReadOptions } from './body-errors';

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
  // A body that came in one chunk is that chunk, not copied. Past one, the bytes are copied
  // into one buffer as they come, never the chunks kept: a sender's one-byte chunks would
  // otherwise cost an object each, some 200 times the body's size.
  let first: Uint8Array | undefined;
  let buffer: Uint8Array | undefined;
  let size = 0;
  // A stream can yield without ever waiting, and then no timer runs while it is read.
  const deadline = Date.now() + options.timeoutSeconds * 1000;
  let emptyChunks = 0;
  // As on Node: a bridge from a Node request yields a chunked body's chunks one by one, and
  // a sender's one-byte chunks would each cost a turn of this loop.
  const mostChunks = contentLength === undefined ? mostChunksWithoutLength(limit) : Infinity;
  let chunks = 0;
  if (reader !== undefined) {
    try {
      await withTimeout(
        (async () => {
          for (let read = await reader.read(); !read.done; read = await reader.read()) {
            const chunk: unknown = read.value;
            if (!(chunk instanceof Uint8Array)) throw bodyReadFailed('The request body stream yielded something other than bytes');
            if (Date.now() > deadline) throw bodyTimedOut(options.timeoutSeconds);
            if (chunk.byteLength === 0) {
              // Each costs a turn of the loop and adds nothing; no network stream yields many.
              if ((emptyChunks += 1) > MOST_EMPTY_CHUNKS) throw bodyReadFailed('The request body stream yielded empty chunks without end');
              continue;
            }
            // Counted before the limit is checked, in the Node reader's order.
            if ((chunks += 1) > mostChunks) throw tooManyChunks(mostChunks);
            if (size + chunk.byteLength > limit) throw payloadTooLarge(limit);
            if (first === undefined) first = chunk;
            else {
              if (buffer === undefined || size + chunk.byteLength > buffer.byteLength) {
                buffer = grown(buffer ?? first, size, size + chunk.byteLength, limit, contentLength);
              }
              buffer.set(chunk, size);
            }
            size += chunk.byteLength;
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
  return buffer?.subarray(0, size) ?? first ?? new Uint8Array(0);
}

/** How many empty chunks a body stream may yield before it is refused. */
const MOST_EMPTY_CHUNKS = 1000;

/** The least a buffer grows by, so a body in tiny chunks is copied a few times, not once a chunk. */
const LEAST_GROWTH = 16 * 1024;

/**
 * A buffer with room for `needed` bytes, holding the `used` bytes of `kept`:
 * double what is kept, but no more than the declared length while the body
 * keeps within it, nor than `limit` (which `needed` is within). Never the
 * declared length at once: a sender that declares 1 MB and sends two bytes
 * would have it held for the whole body timeout.
 */
function grown(kept: Uint8Array, used: number, needed: number, limit: number, declared: number | undefined): Uint8Array {
  const most = declared !== undefined && needed <= declared ? declared : limit;
  const bytes = new Uint8Array(Math.min(most, Math.max(needed, kept.byteLength * 2, LEAST_GROWTH)));
  bytes.set(kept.subarray(0, used));
  return bytes;
}
