import type { MitpoEvent, UnknownMitpoEvent } from '../events/schemas';

/**
 * The `ordering` option: `true` for the default resource of each event, or a
 * `key` of the app's own. An event whose key is `undefined` is never stale and
 * never waits.
 */
export type OrderingOption = boolean | { key: (event: MitpoEvent | UnknownMitpoEvent) => string | undefined };

/** Where an event stands among its resource's events. */
export interface EventOrder {
  /** What the event is about, e.g. `dispatch:dsp_123`. */
  resource: string;
  /**
   * Its signed body `timestamp` (milliseconds) and then its rank, as one number
   * (`ms * 10 + rank`), so stores compare positions with one `<`.
   */
  position: number;
}

/** A position taken apart, as `onStale` is told it. */
export interface EventPosition {
  /** The signed body `timestamp` of the event that made this one stale. */
  timestamp: Date;
  /** Its rank: `dispatch.accepted` 0, `dispatch.completed` and `dispatch.failed` 1, every other event 0. */
  rank: number;
}

/** Gives an event's place in its resource's order, or undefined when it has none. */
export type OrderOf = (event: MitpoEvent | UnknownMitpoEvent) => EventOrder | undefined;

/**
 * Of two events with one timestamp, a dispatch's outcome comes after its
 * acceptance: a retried `dispatch.accepted` stamped in the same millisecond as
 * `dispatch.completed` must still not move the dispatch back.
 */
const RANK: Readonly<Record<string, number>> = { 'dispatch.completed': 1, 'dispatch.failed': 1 };

/** @throws TypeError on an `ordering` value that is neither a boolean nor `{ key }` */
export function orderOf(option: unknown): OrderOf | undefined {
  if (option === undefined || option === false) return undefined;
  if (option === true) return (event) => place(event, defaultResource(event));
  const key = (option as { key?: unknown } | null)?.key;
  if (typeof option !== 'object' || option === null || typeof key !== 'function' || Object.keys(option).some((name) => name !== 'key')) {
    throw new TypeError('mitpo-webhooks: ordering must be true, false or { key: (event) => string | undefined }');
  }
  return (event) => {
    const resource: unknown = key(event);
    if (resource === undefined) return undefined;
    if (typeof resource !== 'string' || resource === '') {
      throw new TypeError(`mitpo-webhooks: the ordering key returned ${typeof resource === 'string' ? 'an empty string' : typeof resource}; it must return a non-empty string or undefined`);
    }
    return place(event, resource);
  };
}

/** `dispatch:<dispatch_id>` for `dispatch.*`, `connection:<connection_id>` for `connection.*`. */
function defaultResource(event: MitpoEvent | UnknownMitpoEvent): string | undefined {
  const data = event.data as Record<string, unknown>;
  const [family] = event.event.split('.', 1);
  const id = family === 'dispatch' ? data.dispatch_id : family === 'connection' ? data.connection_id : undefined;
  return typeof id === 'string' && id !== '' ? `${family}:${id}` : undefined;
}

function place(event: MitpoEvent | UnknownMitpoEvent, resource: string | undefined): EventOrder | undefined {
  if (resource === undefined) return undefined;
  // The schema accepted the timestamp as ISO 8601, so it parses.
  return { resource, position: Date.parse(event.timestamp) * 10 + (RANK[event.event] ?? 0) };
}

/** A position as `onStale` tells it. */
export function positionOf(position: number): EventPosition {
  const rank = ((position % 10) + 10) % 10;
  return { timestamp: new Date((position - rank) / 10), rank };
}
