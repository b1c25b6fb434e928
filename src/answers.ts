import type { WebhookVerificationError } from './errors';

/** The content type of every answer. */
export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/** MITPO's response envelope. */
export type WebhookResponseBody =
  | { success: true; duplicate?: true }
  | { success: false; error: { code: string; message: string } };

/** What a delivery is answered with. */
export interface WebhookResponse {
  status: number;
  body: WebhookResponseBody;
}

/** The answer plus, on a refusal, the error behind it (for `onFailure` and `passErrors`). */
export interface Outcome extends WebhookResponse {
  error?: WebhookVerificationError;
  /** `body` already serialized, and its response headers, for the answers every delivery shares. */
  json?: string;
  headers?: Readonly<Record<string, string | number>>;
}

export const SUCCESS: Outcome = shared({ success: true });
export const DUPLICATE: Outcome = shared({ success: true, duplicate: true });

/** A 200 every such delivery shares, serialized once. */
function shared(body: WebhookResponseBody): Outcome {
  const json = JSON.stringify(body);
  return Object.freeze({
    status: 200,
    body: Object.freeze(body),
    json,
    headers: Object.freeze({ 'content-type': JSON_CONTENT_TYPE, 'content-length': Buffer.byteLength(json) }),
  });
}

/** The answer to a refused delivery, in MITPO's envelope, keeping the error for onFailure and passErrors. */
export function refusal(error: WebhookVerificationError): Outcome {
  return { status: error.status, body: { success: false, error: { code: error.code, message: error.message } }, error };
}
