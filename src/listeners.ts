/**
 * The functions an app registers to be told of something (`onFailure`,
 * `onError`, `onDeadLetter`). One rule for all of them: a listener that throws
 * or rejects never changes the answer, and never becomes an unhandled
 * rejection that could kill the process.
 */
export class Listeners<Args extends unknown[]> {
  private list: ReadonlyArray<(...args: Args) => unknown> = [];

  /** @param method - the registering method's name, for the TypeError */
  constructor(private readonly method: string) {}

  /** @throws TypeError when `listener` is not a function */
  add(listener: unknown): void {
    if (typeof listener !== 'function') {
      throw new TypeError(`mitpo-webhooks: ${this.method}() needs a function as its handler (got ${typeof listener})`);
    }
    // Replaced, never mutated: a listener added while others are being told is told next time.
    this.list = [...this.list, listener as (...args: Args) => unknown];
  }

  emit(...args: Args): void {
    for (const listener of this.list) {
      try {
        ignoreRejection(listener(...args));
      } catch {
        // A throwing listener changes nothing.
      }
    }
  }
}

/** What an app's function returned, when it is a promise: its rejection taken, so it is never unhandled. */
export function ignoreRejection(value: unknown): void {
  if (isThenable(value)) value.then(undefined, ignore);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

function ignore(): void {}
