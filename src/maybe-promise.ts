/**
 * A value now, or later. The delivery pipeline stays synchronous for as long as
 * nothing it calls is asynchronous (static secrets, the memory store, sync
 * handlers), because each `await` on the per-request path costs more than most
 * of the checks themselves.
 */
export type MaybePromise<T> = T | Promise<T>;

export function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

