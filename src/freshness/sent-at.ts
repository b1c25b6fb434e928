import { WebhookVerificationError } from '../errors';

const UNIX_SECONDS = /^[0-9]{1,12}$/;

/**
 * Reads `X-MITPO-Timestamp` and refuses a delivery sent outside `tolerance`,
 * past or future. The header is not covered by the HMAC, so this only stops
 * stale retries and clock trouble early; replays are stopped by the signed body
 * timestamp and the replay store.
 *
 * @throws WebhookVerificationError `missing_timestamp`, `malformed_timestamp` or `timestamp_out_of_tolerance`
 */
export function checkSentAt(value: string | readonly string[] | undefined, nowMs: number, toleranceSeconds: number): void {
  const sentAt = readSentAt(value);
  // The header has whole-second granularity, so the clock is read the same way;
  // rounding instead would let a header 300.6 s off pass a 300 s tolerance.
  const skew = Math.floor(nowMs / 1000) - sentAt;
  if (Math.abs(skew) > toleranceSeconds) {
    const direction = skew > 0 ? `${skew} s in the past` : `${-skew} s in the future`;
    throw new WebhookVerificationError(
      'timestamp_out_of_tolerance',
      `X-MITPO-Timestamp is ${direction}, outside the tolerance of ${toleranceSeconds} s; if deliveries are fresh, check this server's clock`,
    );
  }
}

function readSentAt(value: string | readonly string[] | undefined): number {
  if (typeof value === 'string' && UNIX_SECONDS.test(value)) return Number(value);
  if (value === undefined || (typeof value === 'string' && value.trim() === '')) {
    throw new WebhookVerificationError('missing_timestamp', 'The X-MITPO-Timestamp header is missing');
  }
  let hint = '';
  if (typeof value !== 'string' || value.includes(',')) hint = ' (the header was sent more than once)';
  else if (/^[0-9]{13}$/.test(value)) hint = ' (this looks like milliseconds; MITPO sends seconds)';
  throw new WebhookVerificationError('malformed_timestamp', `X-MITPO-Timestamp must be whole unix seconds, e.g. 1774175400${hint}`);
}
