/** What {@link readLimitedBody} read. */
export interface LimitedBody {
  /** The bytes read, decoded as UTF-8 (a character cut at the limit becomes U+FFFD). */
  text: string;
  /** False when the answer had more than `maxBytes` bytes: `text` is then its first `maxBytes`. */
  complete: boolean;
}

/**
 * Reads at most `maxBytes` of a fetch answer's body, then cancels the rest, so a
 * server that answers with hundreds of megabytes costs at most `maxBytes` of memory.
 * `response.text()` would buffer the whole body before anyone could look at its size.
 *
 * Errors of the stream itself (a reset connection, the request's abort signal firing)
 * are thrown as they come, for the caller to name.
 */
export async function readLimitedBody(response: Response, maxBytes: number): Promise<LimitedBody> {
  if (response.body === null) return { text: '', complete: true };
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const room = maxBytes - total;
    if (value.byteLength > room) {
      // One byte past the limit is enough to know: keep what fits, stop the transfer.
      chunks.push(value.subarray(0, room));
      total += room;
      await reader.cancel().catch(() => {});
      return { text: Buffer.concat(chunks, total).toString('utf8'), complete: false };
    }
    chunks.push(value);
    total += value.byteLength;
  }
  return { text: Buffer.concat(chunks, total).toString('utf8'), complete: true };
}
