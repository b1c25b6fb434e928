import { WebhookVerificationError } from '../errors';

/** Seconds MITPO is asked to wait before retrying a delivery refused during a shutdown. */
const RETRY_AFTER_SECONDS = 10;

/**
 * Graceful shutdown: once `close()` is called, new deliveries are refused before
 * anything is read; the ones already under way get until the deadline to finish.
 * Handlers still running at the deadline are abandoned by their delivery, which
 * is then released (never completed) and answered 503, so MITPO retries it.
 */
export class Shutdown {
  private closingSince: number | undefined;
  private readonly running = new Set<Promise<unknown>>();
  /** True once the deadline was reached: a delivery still to be handled is refused. */
  pastDeadline = false;
  /**
   * Told when the deadline is reached. A set of callbacks, each removed when its
   * delivery settles, rather than one pending promise every delivery chains on:
   * reactions on a promise that is not settled until shutdown would be kept for
   * every delivery the process ever handled.
   */
  private readonly atDeadline = new Set<() => void>();
  private closed: Promise<void> | undefined;

  get closing(): boolean {
    return this.closingSince !== undefined;
  }

  /**
   * Resolves with `value` if the deadline is reached before `work` settles, else
   * with `work`'s own result; the deadline's watch ends either way.
   */
  async race<T, D>(work: Promise<T>, value: D): Promise<T | D> {
    if (this.pastDeadline) return value;
    let stop: () => void = () => undefined;
    const reached = new Promise<D>((resolve) => {
      stop = () => resolve(value);
      this.atDeadline.add(stop);
    });
    try {
      return await Promise.race([work, reached]);
    } finally {
      this.atDeadline.delete(stop);
    }
  }

  private reachDeadline(): void {
    this.pastDeadline = true;
    for (const stop of this.atDeadline) stop();
  }

  /** Counts a delivery as under way until `work` settles. */
  track<T>(work: Promise<T>): Promise<T> {
    this.running.add(work);
    const untrack = () => this.running.delete(work);
    work.then(untrack, untrack);
    return work;
  }

  /**
   * Refuses new deliveries, waits up to `timeoutSeconds` for those under way,
   * then runs `afterDeliveries` with the seconds left (for workers and
   * connections). Calling it again returns the same promise.
   */
  close(timeoutSeconds: number, afterDeliveries: (secondsLeft: number) => Promise<void>): Promise<void> {
    this.closed ??= (async () => {
      const started = Date.now();
      this.closingSince = started;
      const timer = setTimeout(() => this.reachDeadline(), timeoutSeconds * 1000);
      timer.unref();
      // Every delivery either finishes or, in its handlers, gives up at the deadline.
      await this.race(Promise.allSettled([...this.running]), undefined);
      await afterDeliveries(Math.max(0, timeoutSeconds - (Date.now() - started) / 1000));
      clearTimeout(timer);
      this.reachDeadline();
    })();
    return this.closed;
  }
}

/** The 503 every delivery gets once the receiver is shutting down. */
export function shuttingDown(detail: string): WebhookVerificationError {
  return new WebhookVerificationError('shutting_down', `This receiver is shutting down; ${detail}. Retry later.`, {
    headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
  });
}
