import type { BodyReadOptions } from '../body/body-errors';
import { toError, WebhookVerificationError } from '../errors';
import { checkEventHeader } from '../events/event-header';
import { parseAnyEvent } from '../events/parse-event';
import { parseJson } from '../events/parse-json';
import type { MitpoEvent, UnknownMitpoEvent } from '../events/schemas';
import { checkEventAge } from '../freshness/event-age';
import { checkSentAt } from '../freshness/sent-at';
import { checkContentType, declaredContentLength } from '../headers/content-type';
import type { DeliveryHeaders } from '../headers/delivery-headers';
import type { ResolvedOptions } from '../options';
import type { Platform } from '../platform/platform';
import { readSignatureHeader } from '../signature/signature-header';
import { sanitizeText } from '../text/sanitize-text';
import type { DeliveryTrace } from './failure-report';

/**
 * What an adapter hands the pipeline: how to read this request's headers and
 * bytes. Everything else (the order of checks, the answer) is the pipeline's.
 */
export interface DeliveryRequest {
  /** The HTTP method, when the adapter owns the route (anything but POST is 405); undefined to skip the check. */
  method: string | undefined;
  /** The headers, as a plain object with lower-case names. */
  headers: DeliveryHeaders;
  /**
   * Reads the raw body within the limit and the timeout.
   * @throws WebhookVerificationError when it cannot (413, 408, 400, or 500 `body_already_parsed`)
   */
  readBody(options: BodyReadOptions): Promise<Uint8Array>;
}

/** A delivery that passed every check: the bytes MITPO signed and the event in them. */
export interface VerifiedDelivery {
  event: MitpoEvent | UnknownMitpoEvent;
  rawBody: Uint8Array;
}

/** A verified delivery and its replay key. */
export interface KeyedDelivery extends VerifiedDelivery {
  deliveryKey: string;
}

/** What the checks need: the receiver's options, and the runtime's cryptography. */
export interface Checks {
  readonly options: ResolvedOptions;
  readonly platform: Platform;
}

/**
 * When a delivery is checked. On `arrival` over HTTP, its `X-MITPO-Timestamp`
 * and the event's age are checked too; a worker running stored bytes again
 * (`stored`) checks everything that proves MITPO signed them, not when they
 * were sent, since a retry may run hours later.
 */
export type CheckPoint = 'arrival' | 'stored';

/**
 * Every check but replay, in the contract's order: the checks that need only
 * headers run before a byte of the body is read, and nothing after the
 * signature check runs on bytes MITPO did not sign. The receiver and the
 * queue's workers both go through here, so each check exists once.
 *
 * @throws WebhookVerificationError naming the first check that failed
 */
export async function verified(
  request: DeliveryRequest,
  { options, platform }: Checks,
  trace: DeliveryTrace,
  checkPoint: CheckPoint,
): Promise<VerifiedDelivery> {
  const { headers } = request;
  if (request.method !== undefined && request.method !== 'POST') throw methodNotAllowed(request.method);
  checkContentType(headers);
  const signatureHex = readSignatureHeader(headers['x-mitpo-signature']);
  if (checkPoint === 'arrival') checkSentAt(headers['x-mitpo-timestamp'], options.now(), options.toleranceSeconds);

  const rawBody = platform.bytes(
    await request.readBody({
      limit: options.limit,
      timeoutSeconds: options.bodyTimeoutSeconds,
      contentLength: declaredContentLength(headers),
    }),
  );

  const keys = options.secrets.fixed ?? (await options.secrets.resolve());
  if (!(await platform.signatureMatches(keys, rawBody, signatureHex))) {
    throw new WebhookVerificationError(
      'invalid_signature',
      checkPoint === 'arrival'
        ? 'X-MITPO-Signature does not match the body under the configured secret: check that the secret is this ' +
            "endpoint's and that nothing re-encoded the body before verification"
        : 'The stored delivery does not match its signature under the configured secret',
    );
  }
  trace.rawBody = rawBody;
  const event = parseAnyEvent(parseJson(platform.utf8(rawBody)));
  checkEventHeader(headers['x-mitpo-event'], event.event);
  if (checkPoint === 'arrival') checkEventAge(event.timestamp, options.now(), options.maxEventAgeSeconds, options.toleranceSeconds);
  trace.event = event.event;
  return { event, rawBody };
}

/**
 * A verified delivery with its replay key. Apart from the checks: `verify()`
 * needs no key, and a `deliveryKey` option that throws is our side's failure
 * (500, retryable), not the sender's.
 */
export async function keyed(delivery: VerifiedDelivery, checks: Checks, trace: DeliveryTrace): Promise<KeyedDelivery> {
  const deliveryKey = await deliveryKeyOf(delivery.event, delivery.rawBody, checks);
  trace.deliveryKey = deliveryKey;
  // Written out, not `{ ...delivery, deliveryKey }`: V8 adds a property to a spread copy
  // on its slow path, and every later read of the delivery then missed its inline cache.
  // Worth about a quarter of a delivery's CPU on node:http and a sixth on Fastify in `npm run bench`.
  return { event: delivery.event, rawBody: delivery.rawBody, deliveryKey };
}

/** The replay key of a verified delivery: the `deliveryKey` option's, or the hex SHA-256 of the bytes. */
export function deliveryKeyOf(event: MitpoEvent | UnknownMitpoEvent, rawBody: Uint8Array, { options, platform }: Checks): string | Promise<string> {
  const custom = options.deliveryKey;
  if (custom === undefined) return platform.sha256Hex(rawBody);
  const key: unknown = custom(event, rawBody);
  if (typeof key !== 'string' || key === '') {
    if (typeof (key as PromiseLike<unknown> | null)?.then === 'function') {
      // An async function's promise: left alone, its rejection would be unhandled and end the process.
      Promise.resolve(key).catch(() => undefined);
      throw new TypeError('mitpo-webhooks: the deliveryKey option returned a promise; it must return the key itself, synchronously');
    }
    throw new TypeError(
      `mitpo-webhooks: the deliveryKey option returned ${typeof key === 'string' ? 'an empty string' : typeof key}; it must return a non-empty string`,
    );
  }
  return key;
}

/** Anything but a refusal is our bug or the environment's, never the sender's: 500, and the delivery stays retryable. */
export function asVerificationError(error: unknown): WebhookVerificationError {
  if (error instanceof WebhookVerificationError) return error;
  return new WebhookVerificationError('internal_error', 'The delivery could not be processed; it can be retried', {
    cause: toError(error),
  });
}

/** The 405 every adapter answers to a method other than POST, with the `Allow` header it must carry. */
function methodNotAllowed(method: string): WebhookVerificationError {
  return new WebhookVerificationError(
    'method_not_allowed',
    `MITPO delivers webhooks with POST; ${sanitizeText(method, 16)} is not allowed here`,
    { headers: { allow: 'POST' } },
  );
}
