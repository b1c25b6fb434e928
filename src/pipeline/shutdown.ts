import { WebhookVerificationError } from '../errors';
import { LiveList } from '../live-list';

/** Seconds MITPO is asked to wait before retrying a delivery refused during a shutdown. */
const RETRY_AFTER_SECONDS = 10;
/** How long abandoned deliveries get, past the deadline, to release their claims and be answered. */
const SETTLE_AFTER_DEADLINE_MS = 2000;

/**
 * Graceful shutdown: once `close()` is called, new deliveries are refused before
 * anything is read; the ones already under way get until the deadline to finish.
 * Handlers still running at the deadline are abandoned by their delivery, which
 * is then released (never completed) and answered 503, so MITPO retries it.
 */
export class Shutdown {
  private closingSince: number | undefined;
  /** Deliveries under way: a count, not a set of promises, since nothing but "how many" is ever asked. */
  private running = 0;
  private drained: (() => void) | undefined;
  /** True once the deadline was reached: a delivery still to be handled is refused. */
  pastDeadline = false;
  /**
   * Told when the deadline is reached. Callbacks, each removed when its
   * delivery settles, rather than one pending promise every delivery chains on:
   * reactions on a promise that is not settled until shutdown would be kept for
   * every delivery the process ever handled.
   */
  private readonly atDeadline = new LiveList<() => void>();
  /** Work owed to the store once deliveries are done with (a completion it failed), awaited before the connections close. */
  private readonly owedWork: Array<() => Promise<void>> = [];
  private closed: Promise<void> | undefined;

  get closing(): boolean {
    return this.closingSince !== undefined;
  }

  /** Counts a delivery as under way, until `leave()`. */
  enter(): void {
    this.running += 1;
  }

  leave(): void {
    this.running -= 1;
    if (this.running === 0) this.drained?.();
  }

  private drainedWithin(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.drained = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /**
   * Runs `finish` once the deliveries are done with (finished, or released at the
   * deadline) and before the connections the library opened close; `close()` waits
   * for it, up to SETTLE_AFTER_DEADLINE_MS.
   */
  beforeConnectionsClose(finish: () => Promise<void>): void {
    this.owedWork.push(finish);
  }

  private owedWorkWithin(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
    const done = Promise.allSettled(this.owedWork.map((finish) => finish())).then(() => undefined);
    return Promise.race([done, late]).finally(() => clearTimeout(timer));
  }

  /** Calls `stop` when the deadline is reached, unless `cancel` (returned) was called first. */
  onDeadline(stop: () => void): () => void {
    const entry = this.atDeadline.add(stop);
    return () => this.atDeadline.remove(entry);
  }

  private reachDeadline(): void {
    this.pastDeadline = true;
    for (const stop of this.atDeadline.values()) stop();
    this.atDeadline.clear();
  }

  /**
   * Refuses new deliveries, waits up to `timeoutSeconds` for those under way,
   * then runs `afterDeliveries` (the connections the library opened). Calling it
   * again returns the same promise.
   */
  close(timeoutSeconds: number, afterDeliveries: () => Promise<void>): Promise<void> {
    this.closed ??= (async () => {
      this.closingSince = Date.now();
      // Kept referenced: the app awaits close(), and a process with nothing else left (a
      // handler that never settles holds no handle) must not end before it resolves.
      const timer = setTimeout(() => this.reachDeadline(), timeoutSeconds * 1000);
      // Every delivery either finishes or, in its handlers, gives up at the deadline.
      if (this.running > 0 && !this.pastDeadline) {
        await new Promise<void>((resolve) => {
          this.drained = resolve;
          this.onDeadline(resolve);
        });
      }
      // Those that gave up are released and answered 503 now; their release reaches
      // the store before the connections close (bounded, as a store call may hang).
      if (this.running > 0) await this.drainedWithin(SETTLE_AFTER_DEADLINE_MS);
      if (this.owedWork.length > 0) await this.owedWorkWithin(SETTLE_AFTER_DEADLINE_MS);
      try {
        await afterDeliveries();
      } finally {
        // Also when a queue's close failed: a close() that has settled holds the process no longer.
        clearTimeout(timer);
      }
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
