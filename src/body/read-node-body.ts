import type { IncomingMessage } from 'node:http';
import getRawBody from 'raw-body';
import { WebhookVerificationError } from '../errors';
import { payloadTooLarge } from './size-limit';
import { asBuffer } from './as-buffer';

/** A request as earlier middleware may have left it: with the bytes kept, or parsed. */
export type NodeRequest = IncomingMessage & { body?: unknown; rawBody?: unknown; _body?: unknown };

const FIX_MOUNTING =
  'The request body was already read by another body parser (e.g. express.json()) and its raw bytes were not kept, ' +
  'so the signature cannot be checked. Mount the webhook middleware before express.json(), or exclude its path ' +
  'from the JSON parser, or keep the bytes with express.raw({ type: "application/json" }).';

export type BodyCallback = (error: WebhookVerificationError | undefined, body?: Buffer) => void;

/**
 * The raw body of a Node request, wherever it is: kept by an earlier parser as
 * bytes (`express.raw()`, `req.rawBody`, a text parser's string), or still in the
 * stream. A stream someone else already consumed is reported at once, never
 * waited on: judged by the stream, not by `req.body`, because body-parser sets
 * `req.body = {}` on requests it skips and those must still work.
 *
 * Calls back once, with the body or the refusal. A callback rather than a promise:
 * this runs for every delivery, and the pipeline after it stays synchronous when
 * it can.
 */
export function readNodeBody(
  req: NodeRequest,
  limit: number,
  contentLength: number | undefined,
  timeoutMs: number,
  callback: BodyCallback,
): void {
  const kept = keptBody(req);
  if (kept !== undefined) {
    let bytes: Buffer;
    try {
      bytes = asBuffer(kept);
    } catch (error) {
      callback(error as WebhookVerificationError);
      return;
    }
    callback(bytes.byteLength > limit ? payloadTooLarge(limit) : undefined, bytes);
    return;
  }
  if (req.readableDidRead || req.readableEnded || req._body === true) {
    callback(new WebhookVerificationError('body_already_parsed', FIX_MOUNTING));
    return;
  }
  if (contentLength !== undefined && contentLength > limit) {
    callback(payloadTooLarge(limit));
    return;
  }
  let settled = false;
  const timer = Number.isFinite(timeoutMs)
    ? setTimeout(() => {
        // Stop taking bytes; the 408 goes out with Connection: close, and the
        // socket's closing then ends raw-body's read, whose error is ignored.
        settled = true;
        req.pause();
        callback(new WebhookVerificationError('body_timeout', `The body did not arrive within ${timeoutMs} ms`));
      }, timeoutMs)
    : undefined;
  getRawBody(req, { limit, length: contentLength }, (error, body) => {
    clearTimeout(timer);
    if (settled) return;
    settled = true;
    if (error) callback(bodyError(error, limit));
    else callback(undefined, body);
  });
}

function keptBody(req: NodeRequest): Uint8Array | string | undefined {
  for (const candidate of [req.rawBody, req.body]) {
    if (typeof candidate === 'string' || candidate instanceof Uint8Array) return candidate;
  }
  return undefined;
}


function bodyError(error: unknown, limit: number): WebhookVerificationError {
  const type = (error as { type?: unknown } | null)?.type;
  switch (type) {
    case 'entity.too.large':
      return payloadTooLarge(limit);
    case 'request.size.invalid':
      return new WebhookVerificationError('body_read_failed', 'The body length did not match Content-Length', {
        cause: error,
      });
    case 'request.aborted':
      return new WebhookVerificationError('body_read_failed', 'The client aborted the request before the body ended', {
        cause: error,
      });
    case 'stream.not.readable':
    case 'stream.encoding.set':
      return new WebhookVerificationError('body_already_parsed', FIX_MOUNTING, { cause: error });
    default:
      return new WebhookVerificationError('body_read_failed', 'The request body could not be read', { cause: error });
  }
}
