import { WebhookVerificationError } from '../errors';

/**
 * The signed body `timestamp` bounds how long a captured delivery can be
 * replayed: the replay store keeps a key for `maxEventAge` (plus `tolerance`),
 * so an event older than that is refused here instead. zod has already checked
 * the format, so `Date.parse` reads it.
 *
 * @throws WebhookVerificationError `event_too_old` or `event_in_future`
 */
export function checkEventAge(timestamp: string, nowMs: number, maxEventAgeSeconds: number, toleranceSeconds: number): void {
  const ageMs = nowMs - Date.parse(timestamp);
  if (ageMs > maxEventAgeSeconds * 1000) {
    throw new WebhookVerificationError(
      'event_too_old',
      `The event's signed timestamp is ${Math.round(ageMs / 1000)} s old, more than maxEventAge (${maxEventAgeSeconds} s)`,
    );
  }
  if (-ageMs > toleranceSeconds * 1000) {
    throw new WebhookVerificationError(
      'event_in_future',
      `The event's signed timestamp is ${Math.round(-ageMs / 1000)} s in the future, more than the tolerance (${toleranceSeconds} s)`,
    );
  }
}
