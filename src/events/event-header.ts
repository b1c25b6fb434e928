import { WebhookVerificationError } from '../errors';
import { sanitizeText } from '../text/sanitize-text';

/**
 * `X-MITPO-Event` is not signed, so the body's event is the truth; a header
 * that names another event is refused, since an app routing on the header
 * (a proxy, a log query) would be misled.
 *
 * @throws WebhookVerificationError `event_mismatch`
 */
export function checkEventHeader(header: string | readonly string[] | undefined, event: string): void {
  if (header === undefined || header === event) return;
  const sent = typeof header === 'string' ? header : header.join(', ');
  throw new WebhookVerificationError(
    'event_mismatch',
    `X-MITPO-Event does not match the body's event ("${sanitizeText(sent, 64)}" vs "${sanitizeText(event, 64)}")`,
  );
}
