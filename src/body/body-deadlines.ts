/**
 * Deadlines for body reads, all watched by one interval timer rather than a
 * timer per request: arming and clearing a timer cost about as much as the
 * rest of reading a small body. Every read gets the same timeout, so reads
 * expire in the order they began: pending reads form a list in that order,
 * leaving it is O(1), and a tick stops at the first read still in time. A read
 * is refused between `timeoutMs` and `timeoutMs` plus two ticks (an eighth of
 * it, at most 1 s each) after it began. The timer runs only while reads are
 * pending, and never keeps the process alive.
 */
export class BodyDeadlines {
  private head: BodyDeadline | undefined;
  private tail: BodyDeadline | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticks = 0;
  private readonly tickMs: number;
  private readonly ticksToExpire: number;

  constructor(readonly timeoutMs: number) {
    this.tickMs = Math.max(1, Math.min(1000, Math.ceil(timeoutMs / 8)));
    // +1: the first tick may come at once after the read began.
    this.ticksToExpire = Math.ceil(timeoutMs / this.tickMs) + 1;
  }

  /** Starts watching a read; `onExpire` runs once if it is not cleared in time. */
  watch(onExpire: () => void): BodyDeadline {
    const deadline = new BodyDeadline(this.ticks + this.ticksToExpire, onExpire, this.tail);
    if (this.tail === undefined) this.head = deadline;
    else this.tail.next = deadline;
    this.tail = deadline;
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.tick(), this.tickMs);
      this.timer.unref();
    }
    return deadline;
  }

  /** Stops watching a read (idempotent). */
  clear(deadline: BodyDeadline): void {
    if (deadline.cleared) return;
    deadline.cleared = true;
    if (deadline.previous === undefined) this.head = deadline.next;
    else deadline.previous.next = deadline.next;
    if (deadline.next === undefined) this.tail = deadline.previous;
    else deadline.next.previous = deadline.previous;
    deadline.previous = undefined;
    deadline.next = undefined;
  }

  private tick(): void {
    this.ticks += 1;
    if (this.head === undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    while (this.head !== undefined && this.head.expiresAtTick <= this.ticks) {
      const expired = this.head;
      this.clear(expired);
      expired.onExpire();
    }
  }
}

/** One body read being watched. */
export class BodyDeadline {
  next: BodyDeadline | undefined;
  cleared = false;

  constructor(
    readonly expiresAtTick: number,
    readonly onExpire: () => void,
    public previous: BodyDeadline | undefined,
  ) {}
}
