/**
 * `work`'s result, or a rejection with `timeoutError()` if it has not settled
 * within `ms`; `onTimeout` runs first then (to stop a body read, say). The timer
 * is cleared either way and never keeps the process alive. A late rejection of
 * `work` is handled here, so it never becomes an unhandled rejection.
 */
export async function withTimeout<T>(work: Promise<T>, ms: number, timeoutError: () => Error, onTimeout?: () => void): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(timeoutError());
    }, ms);
    // Timers are objects with unref() on Node (and Bun, Deno), numbers in workerd.
    (timer as { unref?: () => void }).unref?.();
  });
  work.catch(() => undefined);
  try {
    return await Promise.race([work, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
