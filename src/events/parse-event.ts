import type * as z from 'zod/mini';
import { WebhookVerificationError } from '../errors';
import { sanitizeText } from '../text/sanitize-text';
import {
  isMitpoEventName,
  MITPO_EVENT_NAMES,
  mitpoEventSchemas,
  unknownMitpoEventSchema,
  type MitpoEvent,
  type UnknownMitpoEvent,
} from './schemas';

/**
 * Validates an already-parsed JSON value as one of the known MITPO events.
 *
 * @param value - the result of `JSON.parse` on the body
 * @returns the event, typed by its `event` name
 * @throws WebhookVerificationError with code `invalid_payload` when the value is not a known event
 * @example
 * const event = parseEvent(JSON.parse(body));
 * if (event.event === 'dispatch.failed') retry(event.data.dispatch_id);
 */
export function parseEvent(value: unknown): MitpoEvent {
  const name = eventNameOf(value);
  if (!isMitpoEventName(name)) {
    const got = typeof name === 'string' ? `"${sanitizeText(name, 64)}"` : 'no event name';
    throw new WebhookVerificationError(
      'invalid_payload',
      `Event payload has ${got}; known event types are ${MITPO_EVENT_NAMES.join(', ')}`,
    );
  }
  return parseWith(mitpoEventSchemas[name], value, name) as MitpoEvent;
}

/**
 * Like {@link parseEvent}, but a well-formed event of a type this version does
 * not know is returned as an {@link UnknownMitpoEvent} instead of refused, so
 * MITPO adding an event type never breaks a receiver.
 */
export function parseAnyEvent(value: unknown): MitpoEvent | UnknownMitpoEvent {
  const name = eventNameOf(value);
  if (isMitpoEventName(name)) return parseWith(mitpoEventSchemas[name], value, name) as MitpoEvent;
  return parseWith(unknownMitpoEventSchema, value, typeof name === 'string' ? name : undefined);
}

function eventNameOf(value: unknown): unknown {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as { event?: unknown }).event
    : undefined;
}

function parseWith<S extends z.ZodMiniType>(schema: S, value: unknown, name: string | undefined): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  // A path names keys from the sender's JSON, so it is sanitised like any other echo.
  const where = issue && issue.path.length > 0 ? sanitizeText(issue.path.map(String).join('.')) : 'the body';
  const what = name === undefined ? 'the MITPO event envelope' : `the "${sanitizeText(name, 64)}" event schema`;
  throw new WebhookVerificationError(
    'invalid_payload',
    `Event payload does not match ${what}: ${where}: ${sanitizeText(issue?.message ?? 'invalid', 200)}`,
    { cause: result.error },
  );
}
