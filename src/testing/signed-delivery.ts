import type { MitpoEventName, MitpoEventOf } from '../events/schemas';
import { checkOptionKeys } from '../option-keys';
import { sign } from '../signature/sign';
import { sampleData } from './sample-data';

/** A moment as a `Date` or unix seconds. */
export type Moment = Date | number;

/** What {@link signedDelivery} takes. */
export interface SignedDeliveryOptions<N extends string = MitpoEventName> {
  /** The event type; any string, so tests can send types MITPO may add later. */
  event: N;
  /**
   * The event's `data`, signed exactly as given (the body is then byte-stable).
   * Default: a fresh sample from {@link sampleData} on every call, so two default
   * deliveries are never each other's duplicates.
   */
  data?: (N extends MitpoEventName ? MitpoEventOf<N>['data'] | Record<string, unknown> : Record<string, unknown>) | undefined;
  /** The signing secret (`whsec_...`). */
  secret: string;
  /** The event's time, the signed body `timestamp`. Default now. */
  timestamp?: Moment | undefined;
  /** When it was sent, the `X-MITPO-Timestamp` header. Default now. */
  sentAt?: Moment | undefined;
}

/** A delivery ready to send: the exact body, and the headers MITPO sends with it. */
export interface SignedDelivery {
  body: string;
  headers: Record<string, string>;
}

/**
 * Builds a delivery byte for byte like MITPO's: body keys in the order `event`,
 * `timestamp`, `data`; headers `Content-Type`, `X-MITPO-Signature`,
 * `X-MITPO-Timestamp`, `X-MITPO-Event`. Without `data`, each call makes a sample
 * with fresh ids; with `data` (and fixed moments) the body is the same on every call.
 *
 * @throws TypeError on an unusable secret (empty, padded, quoted, or only `whsec_`;
 *   the message never contains it), an invalid moment, an event name no HTTP header can
 *   carry, or an option name it does not know
 * @example
 * const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret });
 * await request(app).post('/webhooks/mitpo').set(headers).send(body).expect(200);
 */
export function signedDelivery<N extends string>(options: SignedDeliveryOptions<N>): SignedDelivery {
  // A misspelt moment (`timestmap`) would otherwise sign a delivery sent now, and the test pass for the wrong reason.
  checkOptionKeys(options, 'signedDelivery()', SIGNED_DELIVERY_OPTIONS);
  const { event, secret } = options;
  if (typeof event !== 'string' || event === '') throw new TypeError('signedDelivery: event must be a non-empty string');
  // It is the X-MITPO-Event header too: a name no header can carry made a delivery that no client could send.
  if (!HEADER_TEXT.test(event) || event.trim() !== event) {
    throw new TypeError('signedDelivery: event cannot be sent as the X-MITPO-Event header: it has a control character, a character above U+00FF or spaces around it');
  }
  const data = options.data ?? sampleData(event);
  const body = JSON.stringify({ event, timestamp: isoSeconds(toDate(options.timestamp, 'timestamp')), data });
  const sentAt = Math.floor(toDate(options.sentAt, 'sentAt').getTime() / 1000);
  return {
    body,
    headers: {
      'Content-Type': 'application/json',
      'X-MITPO-Signature': sign(body, secret),
      'X-MITPO-Timestamp': String(sentAt),
      'X-MITPO-Event': event,
    },
  };
}

const SIGNED_DELIVERY_OPTIONS = ['event', 'data', 'secret', 'timestamp', 'sentAt'];

/** What an HTTP header value carries (Fetch's ByteString, Node's check): Latin-1 without control characters. */
const HEADER_TEXT = /^[\x20-\x7e\x80-\xff]+$/;

function toDate(moment: Moment | undefined, name: string): Date {
  const date = moment === undefined ? new Date() : typeof moment === 'number' ? new Date(moment * 1000) : moment;
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
    throw new TypeError(`signedDelivery: ${name} must be a Date or unix seconds`);
  }
  return date;
}

/** MITPO writes times to the second: `2026-03-22T10:30:00Z`. */
function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
