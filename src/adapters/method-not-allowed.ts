import { WebhookVerificationError } from '../errors';

/** The 405 every adapter answers to a method other than POST, with the `Allow` header it must carry. */
export function methodNotAllowed(method: string | undefined): WebhookVerificationError {
  return new WebhookVerificationError(
    'method_not_allowed',
    `MITPO delivers webhooks with POST; ${String(method).slice(0, 16)} is not allowed here`,
    { headers: { allow: 'POST' } },
  );
}
