import { isUtf8 } from 'node:buffer';
import { WebhookVerificationError } from '../errors';

/**
 * The body's JSON value. JSON is UTF-8 on the wire; decoding invalid bytes to
 * U+FFFD would silently change what MITPO signed, so such a body is refused
 * instead of re-decoded.
 *
 * @throws WebhookVerificationError `invalid_json`
 */
export function parseJson(rawBody: Buffer): unknown {
  if (!isUtf8(rawBody)) throw new WebhookVerificationError('invalid_json', 'The body is not valid UTF-8');
  try {
    return JSON.parse(rawBody.toString('utf8'));
  } catch (error) {
    throw new WebhookVerificationError('invalid_json', 'The body is not valid JSON', { cause: error });
  }
}
