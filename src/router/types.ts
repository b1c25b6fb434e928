import type { MitpoEvent, MitpoEventName, MitpoEventOf, UnknownMitpoEvent } from '../events/schemas';
import type { DeliveryHeaders } from '../headers/delivery-headers';

/**
 * What a handler learns about the delivery besides the event. `Bytes` is the
 * runtime's type of bytes: `Buffer` on Node (the main entry's types say so),
 * `Uint8Array` from `mitpo-webhooks/web`.
 */
export interface DeliveryContext<Bytes extends Uint8Array = Uint8Array> {
  /** The request's headers: a plain object, names in lower case, under every adapter. */
  headers: DeliveryHeaders;
  /** The body exactly as received. */
  rawBody: Bytes;
  /** The replay key (by default the hex SHA-256 of the raw body): a ready-made idempotency key for the app's own records. */
  deliveryKey: string;
  /** When the delivery arrived at the receiver. */
  receivedAt: Date;
  /** Which run of the handlers this is, from 1: above 1 only for a queued delivery a worker retries. */
  attempt: number;
  /**
   * With the Postgres queue (`mitpo-webhooks/postgres`), in handlers: a client
   * inside the transaction that also marks this delivery done. What handlers
   * write through it is applied exactly once; undefined in every other mode, and
   * for `onStale` and `onDeadLetter`, which are told outside that transaction.
   */
  db?: DatabaseClient | undefined;
}

/**
 * A database client as handlers get it in `ctx.db`: node-postgres' `PoolClient`
 * (cast to it for the rest of its API), inside the delivery's transaction.
 */
export interface DatabaseClient {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- rows are the app's own tables'
  query(text: string, values?: unknown[]): Promise<{ rows: any[]; rowCount: number | null }>;
}

/** A handler for the named event(s); may be sync or async. The answer waits for it. */
export type EventHandler<N extends MitpoEventName = MitpoEventName, Bytes extends Uint8Array = Uint8Array> = (
  event: MitpoEventOf<N>,
  ctx: DeliveryContext<Bytes>,
) => unknown;

/** A handler for every verified event, including types this version does not know. */
export type AnyEventHandler<Bytes extends Uint8Array = Uint8Array> = (event: MitpoEvent | UnknownMitpoEvent, ctx: DeliveryContext<Bytes>) => unknown;

/** Told when a handler throws or rejects; `error` is always an `Error` (a thrown non-Error is wrapped, kept as `cause`). */
export type HandlerErrorHandler<Bytes extends Uint8Array = Uint8Array> = (
  error: Error,
  event: MitpoEvent | UnknownMitpoEvent,
  ctx: DeliveryContext<Bytes>,
) => unknown;
