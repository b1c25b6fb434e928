import { bodyAlreadyParsed, payloadTooLarge, rawBodyGivenAsBody } from './body/body-errors';
import { bodyBytesOf } from './body/body-bytes';
import { toDeliveryHeaders, type WebhookHeaders } from './headers/delivery-headers';
import type { DeliveryRequest } from './pipeline/verified';

/** A delivery as `verify()` and `receive()` take it. */
export interface DeliveryInput {
  /** The body exactly as received: bytes (a `Buffer` is a `Uint8Array`), or a string taken as UTF-8. */
  rawBody: Uint8Array | string;
  /** The request headers; names are matched without regard to case. */
  headers: WebhookHeaders;
}

/** `receive()` and `verify()` have the bytes already; missing ones are the server's mistake (500), not the sender's. */
export function requestFromInput(input: DeliveryInput | undefined): DeliveryRequest {
  return {
    method: undefined,
    headers: toDeliveryHeaders(input?.headers),
    readBody({ limit }) {
      const bytes = bodyBytesOf(input?.rawBody);
      if (bytes === undefined) return Promise.reject(givenBody(input) ? rawBodyGivenAsBody() : bodyAlreadyParsed('receive'));
      if (bytes.byteLength > limit) return Promise.reject(payloadTooLarge(limit));
      return Promise.resolve(bytes);
    },
  };
}

/** `{ body, headers }` where `{ rawBody, headers }` was meant: a slip of the caller's, not a parser's. */
function givenBody(input: DeliveryInput | undefined): boolean {
  return typeof input === 'object' && input !== null && input.rawBody === undefined && 'body' in input;
}
