import type { WebhookVerificationError } from './errors';

/** The content type of every answer. */
export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/** MITPO's response envelope. */
export type WebhookResponseBody =
  | { success: true; duplicate?: true | undefined; queued?: true | undefined; stale?: true | undefined }
  | { success: false; error: { code: string; message: string } };

/** What a delivery is answered with. */
export interface WebhookResponse {
  status: number;
  body: WebhookResponseBody;
}

/** The answer plus, on a refusal, the error behind it (for `passErrors` and its headers, such as `Allow`). */
export interface Outcome extends WebhookResponse {
  error?: WebhookVerificationError | undefined;
  /** The body as JSON text, when it is fixed: the answers most deliveries get are serialised once. */
  readonly json?: string | undefined;
  /** What kind of success a fixed answer is, as telemetry and logs record it. */
  readonly name?: string | undefined;
}

function fixedAnswer(name: string, body: WebhookResponseBody): Outcome {
  return Object.freeze({ status: 200, body: Object.freeze(body), json: JSON.stringify(body), name });
}

export const SUCCESS = fixedAnswer('success', { success: true });
export const QUEUED = fixedAnswer('queued', { success: true, queued: true });
export const DUPLICATE = fixedAnswer('duplicate', { success: true, duplicate: true });
/** A stale event (`ordering`): not applied, and MITPO need not retry it. */
export const STALE = fixedAnswer('stale', { success: true, stale: true });

/** The answer to a refused delivery, in MITPO's envelope. */
export function refusal(error: WebhookVerificationError): Outcome {
  return { status: error.status, body: { success: false, error: { code: error.code, message: error.message } }, error };
}

/** The JSON text of an answer. */
export function answerJson(outcome: Outcome): string {
  return outcome.json ?? JSON.stringify(outcome.body);
}

/** The code telemetry and logs record an answer under: its error's, or what kind of success it was. */
export function outcomeName(outcome: Outcome): string {
  return outcome.error?.code ?? outcome.name ?? 'success';
}
