import type { WebhookVerificationError } from './errors';

/** The content type of every answer. */
export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/** MITPO's response envelope. */
export type WebhookResponseBody =
  | { success: true; duplicate?: true; queued?: true }
  | { success: false; error: { code: string; message: string } };

/** What a delivery is answered with. */
export interface WebhookResponse {
  status: number;
  body: WebhookResponseBody;
}

/** The answer plus, on a refusal, the error behind it (for `passErrors` and its headers, such as `Allow`). */
export interface Outcome extends WebhookResponse {
  error?: WebhookVerificationError;
}

export const SUCCESS: Outcome = Object.freeze({ status: 200, body: Object.freeze({ success: true as const }) });
export const QUEUED: Outcome = Object.freeze({
  status: 200,
  body: Object.freeze({ success: true as const, queued: true as const }),
});
export const DUPLICATE: Outcome = Object.freeze({
  status: 200,
  body: Object.freeze({ success: true as const, duplicate: true as const }),
});

/** The answer to a refused delivery, in MITPO's envelope. */
export function refusal(error: WebhookVerificationError): Outcome {
  return { status: error.status, body: { success: false, error: { code: error.code, message: error.message } }, error };
}

/** The headers of an answer: its JSON type and length, and whatever its refusal carries (`Allow`, `Retry-After`). */
export function answerHeaders(outcome: Outcome, json: string): Record<string, string> {
  return { 'content-type': JSON_CONTENT_TYPE, 'content-length': String(Buffer.byteLength(json)), ...outcome.error?.headers };
}
