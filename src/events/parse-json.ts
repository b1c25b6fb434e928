import { WebhookVerificationError } from '../errors';

/**
 * The body's JSON value. JSON is UTF-8 on the wire; decoding invalid bytes to
 * U+FFFD would silently change what MITPO signed, so such a body (`text`
 * undefined: the platform found it was not UTF-8) is refused instead of re-decoded.
 *
 * @throws WebhookVerificationError `invalid_json`
 */
export function parseJson(text: string | undefined): unknown {
  if (text === undefined) throw new WebhookVerificationError('invalid_json', 'The body is not valid UTF-8');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new WebhookVerificationError('invalid_json', 'The body is not valid JSON', { cause: error });
  }
}
