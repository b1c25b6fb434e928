import type { EventOrder } from '../ordering/event-order';
import type { DatabaseClient } from '../router/types';
/**
 * A delivery as it is queued: the bytes MITPO signed and the headers needed to
 * verify them again, nothing else from the request. Redis is not trusted, so a
 * worker checks the signature again before it runs a handler.
 */
export interface QueuedDelivery {
  /** The replay key; the job's identity, so a delivery is queued once. */
  deliveryKey: string;
  /**
   * The hex SHA-256 of the body, set when the key is the app's own (`deliveryKey`
   * option): a queue that finds the key taken by other bytes answers `'collision'`.
   */
  bodyDigest?: string | undefined;
  /** The raw body exactly as received: a `Buffer` when the receiver queued it (a `Uint8Array` is enough for a queue to hand back). */
  rawBody: Uint8Array;
  /** `content-type` and the `x-mitpo-*` headers, lower-case names. */
  headers: Readonly<Record<string, string>>;
  /** When the receiver got it, milliseconds since the epoch. */
  receivedAt: number;
  /**
   * Set when the receiver refused an authentic delivery (valid signature) as
   * `invalid_payload`: it is kept among the dead letters with the schema's issues,
   * and a retry validates it again against the schema of the version then running.
   */
  refused?: { code: string; message: string; issues?: unknown } | undefined;
  /** The receive span's W3C trace context, so the worker's span links to it. */
  traceparent?: string | undefined;
  /**
   * Set when an operator retried the delivery as a dead letter (`deliveries
   * retry`): it then runs even if its event is older than `maxEventAge`.
   */
  retriedByOperator?: boolean | undefined;
}

/** What one run of a queued delivery is told by the queue. */
export interface QueuedRun {
  delivery: QueuedDelivery;
  /** The id the queue holds the delivery under, when it has its own (checked against the verified key). */
  storedAs?: string | undefined;
  /** When the queue took the delivery, milliseconds since the epoch, when it knows. */
  queuedAt?: number | undefined;
  /**
   * This run's number, from 1, counting every started run (a run whose worker died
   * included). For an `exhausted` start, which runs nothing, the last run's number.
   */
  attempt: number;
  /** Whether a failure now makes the delivery a dead letter (no attempt left). */
  lastAttempt: boolean;
  /**
   * Set when every attempt was already started and none finished (their workers
   * died): the delivery is to be reported as a dead letter, its handlers not run again.
   */
  exhausted?: boolean | undefined;
  /** Given by a queue that keeps order (`keepsOrder`), for `ordering`. */
  takeTurn?: TakeTurn | undefined;
  /**
   * A database client inside the transaction that also marks the delivery done
   * (the Postgres queue): handlers get it as `ctx.db`, and what they write
   * through it commits with the done mark or not at all.
   */
  db?: DatabaseClient | undefined;
  /**
   * Given by a queue whose completion can fail after the handlers succeeded (the
   * Postgres queue commits their writes with the done mark): called once they
   * have, and a rejection makes the run a failed one, retried or a dead letter.
   */
  complete?: (() => Promise<void>) | undefined;
  /**
   * Given by a queue whose runs hold a transaction (the Postgres queue): undoes
   * what the handlers wrote, called when they failed. A rejection with
   * {@link FinalDeliveryFailure} says it cannot (the handlers ended the
   * transaction themselves, and what they wrote may stand): the run is then a
   * dead letter at once, since a retry would write it again.
   */
  undo?: (() => Promise<void>) | undefined;
  /**
   * Given by a queue whose runs hold a transaction (the Postgres queue): queues
   * a delivery in it, through the run's own connection, so that it commits
   * with the run's completion or not at all. Used to move a kept refused
   * delivery that passes now to its own key; without it, `enqueue()`.
   */
  enqueueHere?: ((delivery: QueuedDelivery, retentionMs: number) => Promise<'queued' | 'duplicate' | 'collision'>) | undefined;
}

/**
 * A run's turn on the resource its event is about (`ordering`), from a queue
 * that keeps order: `'taken'` to run the handlers, `'busy'` while another run of
 * the resource holds it, `{ stale }` with the applied position above this
 * event's. The queue records the position when the run resolves (with the
 * completion, in one step where it can) and frees the turn when it settles.
 */
export type TakeTurn = (order: EventOrder) => Promise<'taken' | 'busy' | { stale: number }>;

/**
 * Runs one queued delivery. Resolves when it was handled; rejects to have it
 * retried (or dead-lettered after the last attempt). A rejection with a
 * {@link FinalDeliveryFailure} makes it a dead letter at once.
 */
export type QueuedDeliveryProcessor = (run: QueuedRun) => Promise<void>;

/** Options of a worker. */
export interface WorkerOptions {
  /** How many deliveries this worker handles at once, a whole number from 1 (the receiver checks it). Default 1. */
  concurrency?: number | undefined;
  /**
   * How a run's `mitpo.webhook.process` span relates to the delivery's receive
   * span: `'link'` (the default: a trace of its own, linked) or `'child'` (one
   * trace, one waterfall, from the request to the handlers).
   */
  trace?: 'link' | 'child' | undefined;
}

/** How many deliveries a queue holds, by state, for the `mitpo.webhook.queue.depth` gauge. */
export type QueueDepth = Partial<Record<'waiting' | 'active' | 'delayed' | 'failed', number>>;

/** A running worker. */
export interface DeliveryWorker {
  /**
   * Stops taking deliveries and waits up to `timeoutSeconds` for the running
   * ones; a delivery still running then is left to the queue's recovery of
   * stalled jobs (another worker runs it again).
   */
  close(timeoutSeconds: number): Promise<void>;
}

/**
 * Where verified deliveries wait for a worker: `BullMQDeliveryQueue`,
 * `PostgresDeliveryQueue`, `MemoryDeliveryQueue`, or one of the app's own. The
 * receiver answers once `enqueue` resolved.
 */
export interface DeliveryQueue {
  /**
   * Queues a verified delivery durably, unless one with its key is already
   * queued, running, handled or kept as a dead letter.
   * @param retentionMs - how long a handled delivery is kept, so its replays are answered as duplicates
   * @returns `'queued'` once the queue acknowledged it, `'duplicate'` when it was already there,
   *   `'collision'` when its key was taken by a delivery with other bytes (see `bodyDigest`)
   * @throws when the queue could not take it in time (the receiver answers 503 `queue_unavailable`)
   */
  enqueue(delivery: QueuedDelivery, retentionMs: number): Promise<'queued' | 'duplicate' | 'collision'>;
  /**
   * Starts a worker that runs `processor` for each delivery. `trouble` is told
   * when the worker cannot take or settle deliveries (its store unreachable, a
   * query refused), which it tries again: the receiver logs it.
   */
  startWorker(processor: QueuedDeliveryProcessor, options: WorkerOptions, trouble?: (error: unknown) => void): DeliveryWorker;
  /** Closes the connections the queue opened, also when Redis is unreachable. */
  close(): Promise<void>;
  /** The id a delivery with this key is held under, for a queue with ids of its own (`storedAs`). */
  idOf?(deliveryKey: string): string;
  /** How many deliveries it holds, by state; read only when a metric reader collects. */
  depth?(): Promise<QueueDepth>;
  /** True when its runs get `takeTurn`, so `ordering` can be used with it. */
  readonly keepsOrder?: boolean | undefined;
}

export function isDeliveryQueue(value: unknown): value is DeliveryQueue {
  const queue = value as Partial<DeliveryQueue> | null;
  return (
    typeof queue === 'object' &&
    queue !== null &&
    typeof queue.enqueue === 'function' &&
    typeof queue.startWorker === 'function' &&
    typeof queue.close === 'function'
  );
}

/**
 * A queued delivery that no later attempt can help (a forged or refused
 * delivery): the queue keeps it as a dead letter at once instead of retrying.
 * A worker run rejects with it, for the queue; thrown by a handler, it is a
 * failed handler like any other (`handler_failed`), retried up to `attempts`.
 * Its own class, like BullMQ's `UnrecoverableError`, so the contract between
 * the worker and the queue is a type, not a flag patched onto an error.
 */
export class FinalDeliveryFailure extends Error {
  override readonly name: string = 'FinalDeliveryFailure';
  /**
   * With `ordering`, the event's place in its resource, when the run never took
   * its turn (its workers died): the queue keeps the resource's applied position
   * as long as this dead letter, as it does for a run that took its turn.
   */
  order?: EventOrder;
}

/**
 * Thrown by a run whose resource is held by another run (`ordering`): the
 * queue runs it again a little later, and that run is not counted as an attempt.
 */
export class DeferredDelivery extends Error {
  override readonly name = 'DeferredDelivery';
}

/**
 * A stored delivery that MITPO did not sign as stored: its signature fails, or
 * its id, key or `X-MITPO-Event` disagree with the verified bytes. Someone with
 * write access to the queue's storage made it. The queue removes it: never a
 * dead letter, never retried.
 */
export class TamperedDelivery extends FinalDeliveryFailure {
  override readonly name = 'TamperedDelivery';
  readonly code = 'tampered_delivery';
}
