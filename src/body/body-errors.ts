import { WebhookVerificationError } from '../errors';

/** Where the raw bytes went, and how to keep them, for each way apps mount us. */
const KEEP_RAW_BODY = {
  node:
    'The request body was already read by another body parser (e.g. express.json()) and its raw bytes were not kept, ' +
    'so the signature cannot be checked. Mount the webhook middleware before express.json(), exclude its path ' +
    'from the JSON parser, or keep the bytes with express.raw({ type: "application/json" }).',
  fetch:
    'The Request body was already read or is locked by another reader (e.g. request.json()), so its raw bytes ' +
    'cannot be verified. Pass the Request to the handler before anything reads it, or clone() it first.',
  receive:
    'receive() needs the raw body as bytes or a string, exactly as received, and got neither: the framework parsed ' +
    'the body and kept nothing. Express: express.raw({ type: "application/json" }) on the route, or ' +
    'webhooks.middleware(). Fastify: mitpo-webhooks/fastify, or a content-type parser with { parseAs: "buffer" }. ' +
    'NestJS: NestFactory.create(AppModule, { rawBody: true }) and req.rawBody.',
  fastify:
    'The request stream was read before the mitpo-webhooks route (by an onRequest or preParsing hook, or a plugin ' +
    'such as fastify-raw-body with runFirst) and its raw bytes were not kept, so the signature cannot be checked. ' +
    'Let nothing read the body of the webhook route before it, or keep the bytes as request.rawBody.',
  koa:
    'The request body was already read by a body parser mounted before koaMitpoWebhooks, and its raw bytes were not ' +
    'kept, so the signature cannot be checked. Mount koaMitpoWebhooks before the body parser (app.use order), ' +
    'or use @koa/bodyparser, which keeps the bytes as ctx.request.rawBody.',
  nestjs:
    'The request body was read before the MitpoWebhooksModule route and its raw bytes were not kept, so the ' +
    'signature cannot be checked: by middleware added to the Express instance ahead of Nest, or, in a testing ' +
    'module, by Nest\'s own JSON parser. Add such middleware after NestFactory.create() (Nest\'s own parsers ' +
    'run after this route), or keep the bytes: createNestApplication({ rawBody: true }).',
  'nestjs-fastify':
    'The request stream was read before the MitpoWebhooksModule route (by an onRequest or preParsing hook on the ' +
    'Fastify instance, which runs before it however late it was added) and its raw bytes were not kept, so the ' +
    'signature cannot be checked. Let such hooks skip the webhook path, or keep the bytes as request.rawBody.',
} as const;

/** Who read the body: the message of `body_already_parsed` names that one's fix. */
export type BodySource = keyof typeof KEEP_RAW_BODY;

/** The 500 for a body another parser consumed: the server's mistake, never the sender's. */
export function bodyAlreadyParsed(where: BodySource): WebhookVerificationError {
  return new WebhookVerificationError('body_already_parsed', KEEP_RAW_BODY[where]);
}

/** `receive()` given `{ body }` in place of `{ rawBody }`. */
export function rawBodyGivenAsBody(): WebhookVerificationError {
  return new WebhookVerificationError(
    'body_already_parsed',
    'receive() takes the raw body as rawBody, and was given body: pass { rawBody, headers }, the bytes exactly as received',
  );
}

/** The refusal of a body past the limit, the same wherever the limit was found out. */
export function payloadTooLarge(limit: number): WebhookVerificationError {
  return new WebhookVerificationError('payload_too_large', `The body is larger than the limit of ${limit} bytes`);
}

/**
 * @param pausedUnread - whether the stream was left paused by someone before a
 *   byte of it was read: then the app's middleware kept the body back, not the sender.
 */
export function bodyTimedOut(seconds: number, pausedUnread = false): WebhookVerificationError {
  const why = pausedUnread ? ': the request stream was paused before it was read, and nothing resumed it (middleware that calls req.pause()?)' : '';
  return new WebhookVerificationError('body_timeout', `The body did not arrive within bodyTimeout (${seconds} s)${why}`);
}

export function bodyReadFailed(reason: string, cause?: unknown): WebhookVerificationError {
  return new WebhookVerificationError('body_read_failed', reason, cause === undefined ? undefined : { cause });
}

/** What every body reader is told besides the request. */
export interface BodyReadOptions {
  /** Most bytes accepted. */
  limit: number;
  /** Seconds for the whole body to arrive. */
  timeoutSeconds: number;
  /** The declared `Content-Length`, when one was sent. */
  contentLength: number | undefined;
}

/**
 * The most chunks a body without a `Content-Length` may come in: one per 256
 * bytes of `limit`, and at least 1024. Every chunk costs its reader a turn and an
 * object (raw-body keeps each one; a Fetch stream's reader takes a promise and a
 * copy), so a sender's one-byte chunks, six bytes each on the wire, would cost
 * far more than their bytes. A proxy's or a runtime's re-chunking stays far below.
 * (With a `Content-Length`, each chunk is a read of the socket of its own, which a
 * sender cannot make nearly as fast.)
 */
export function mostChunksWithoutLength(limit: number): number {
  return Math.max(1024, Math.ceil(limit / 256));
}

export function tooManyChunks(most: number): WebhookVerificationError {
  return bodyReadFailed(`The body came in more than ${most} chunks, more than its size warrants`);
}
