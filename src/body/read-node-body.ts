import type { IncomingMessage } from 'node:http';
import getRawBody from 'raw-body';
import {
  bodyAlreadyParsed,
  bodyReadFailed,
  bodyTimedOut,
  mostChunksWithoutLength,
  payloadTooLarge,
  tooManyChunks,
  type BodyReadOptions,
  type BodySource,
} from './body-errors';
import { rawBytesOf } from './raw-bytes';

/** A request as earlier middleware may have left it: with the bytes kept, or parsed. */
export type NodeRequest = IncomingMessage & { body?: unknown; rawBody?: unknown; _body?: unknown };

/**
 * Where a framework's parsers keep the bytes, and whose fix to name when none
 * were kept. Connect-style parsers keep them on the Node request; Koa's and
 * Fastify's on their own request object, which the adapter passes as `kept`.
 */
export interface NodeBodySource {
  framework: BodySource;
  kept: unknown;
}

/** Where Connect-style parsers keep the bytes: `req.rawBody`, or `req.body` when it is bytes or text. */
export function keptOnNodeRequest(req: NodeRequest, framework: BodySource = 'node'): NodeBodySource {
  return { framework, kept: rawBytesOf(req.rawBody) ?? req.body };
}

/**
 * The raw body of a Node request, wherever it is: kept by an earlier parser as
 * bytes (`express.raw()`, `req.rawBody`, a text parser's string), or still in
 * the stream, which raw-body reads. A stream someone else already consumed is
 * refused at once, never waited on: judged by the stream, not by `req.body`,
 * because body-parser sets `req.body = {}` on requests it skips and those must
 * still work.
 *
 * @throws WebhookVerificationError `payload_too_large`, `body_already_parsed`, `body_read_failed` or `body_timeout`
 */
export function readNodeBody(req: NodeRequest, options: BodyReadOptions, source: NodeBodySource = keptOnNodeRequest(req)): Promise<Buffer> {
  const { limit, contentLength, timeoutSeconds } = options;
  const kept = rawBytesOf(source.kept);
  if (kept !== undefined) return kept.byteLength > limit ? Promise.reject(payloadTooLarge(limit)) : Promise.resolve(kept);
  // The contract's order: a declared size past the limit (413) before a consumed body (500).
  if (contentLength !== undefined && contentLength > limit) return Promise.reject(payloadTooLarge(limit));
  if (req.readableDidRead || req.readableEnded || req._body === true) return Promise.reject(bodyAlreadyParsed(source.framework));
  if (req.destroyed) return Promise.reject(bodyReadFailed('The client aborted the request before the body ended'));
  // raw-body's callback form (which keeps the request's async context, as
  // body-parser relies on) with one timer, rather than a promise raced against
  // another: fewer steps per delivery.
  return new Promise((resolve, reject) => {
    // Stopping the stream on a timeout is enough: the 408 closes the connection,
    // and raw-body lets go of the request when it closes.
    const timer = setTimeout(() => {
      // raw-body does not resume a stream someone paused (a listener added then leaves it
      // paused), and taking it over could steal a body meant for another reader: say so instead.
      const pausedUnread = req.isPaused() && !req.readableDidRead;
      req.pause();
      reject(bodyTimedOut(timeoutSeconds, pausedUnread));
    }, timeoutSeconds * 1000);
    timer.unref();
    const stopCounting = contentLength === undefined ? countChunks(req, limit, (refusal) => {
      clearTimeout(timer);
      req.pause();
      reject(refusal);
    }) : undefined;
    getRawBody(req, { limit, length: contentLength ?? null }, (error, body) => {
      clearTimeout(timer);
      stopCounting?.();
      if (error) reject(fromRawBodyError(error, limit, source.framework));
      else resolve(body);
    });
  });
}

/**
 * raw-body keeps each chunk as an object of its own until the body ends, some
 * 200 bytes apiece: a body without a `Content-Length` is refused (400, and the
 * answer closes the connection) past `mostChunksWithoutLength`.
 * @returns a function that stops counting
 */
function countChunks(req: IncomingMessage, limit: number, refuse: (refusal: Error) => void): () => void {
  const most = mostChunksWithoutLength(limit);
  let chunks = 0;
  const counted = () => {
    chunks += 1;
    if (chunks <= most) return;
    req.off('data', counted);
    refuse(tooManyChunks(most));
  };
  req.on('data', counted);
  return () => void req.off('data', counted);
}

/** raw-body's error types, as this library's codes. */
function fromRawBodyError(error: unknown, limit: number, framework: BodySource) {
  const { type, code } = (error ?? {}) as { type?: string; code?: string };
  switch (type) {
    case 'entity.too.large':
      return payloadTooLarge(limit);
    case 'request.size.invalid':
      return bodyReadFailed('The body length did not match Content-Length', error);
    // setEncoding() also counts: the stream then hands out decoded text, not the bytes MITPO signed.
    case 'stream.encoding.set':
    case 'stream.not.readable':
      return bodyAlreadyParsed(framework);
    case 'request.aborted':
      return bodyReadFailed('The client aborted the request before the body ended', error);
    default:
      return bodyReadFailed(
        code === 'ECONNRESET' ? 'The client aborted the request before the body ended' : 'The request body could not be read',
        error,
      );
  }
}
