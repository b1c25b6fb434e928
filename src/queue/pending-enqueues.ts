/** What an enqueue found: queued now, already there, or (a key of the app's own) taken by other bytes. */
export type EnqueueResult = 'queued' | 'duplicate' | 'collision';

/**
 * The enqueues under way in one process, and the bytes they hold, for a queue
 * whose store may hang (Redis, Postgres). A copy of a delivery arriving while
 * its enqueue is under way shares it. The bytes count until the write itself
 * settles, not until the receiver answers: a write still waiting for its store
 * after the 503 holds the body all the same, so releasing them at the answer
 * would let a hung store pile up bodies past the cap.
 */
export class PendingEnqueues {
  private readonly underWay = new Map<string, { writing: Promise<EnqueueResult>; bodyDigest: string | undefined }>();
  private bytes = 0;

  /**
   * @param maxBytes - the queue's `maxPendingBytes`
   * @param store - what the deliveries wait for, for the refusal's message
   */
  constructor(
    private readonly maxBytes: number,
    private readonly store: string,
  ) {}

  /**
   * Starts `write` for `key`, or shares the one under way. Once that settles,
   * the store holds its bytes (it was queued, or found a copy), so a copy is a
   * duplicate and other bytes under a key of the app's own (told apart by
   * `bodyDigest`, as the store does) a collision; if it found yet other bytes
   * there, a copy of its own bytes is a collision too, and other bytes look
   * for themselves with their own write. A copy that shares holds its body
   * while it waits, so its bytes count as the write's do. Past `maxBytes` it
   * rejects at once, and nothing is held. The returned promise is the write's
   * own: the queue bounds the wait for it with its `enqueueTimeout`.
   */
  run(key: string, size: number, write: () => Promise<EnqueueResult>, bodyDigest?: string): Promise<EnqueueResult> {
    if (this.bytes + size > this.maxBytes) {
      return Promise.reject(new Error(`more than maxPendingBytes (${this.maxBytes}) of deliveries are waiting for ${this.store}`));
    }
    this.bytes += size;
    const release = () => void (this.bytes -= size);
    const sharing = this.underWay.get(key);
    if (sharing === undefined) {
      const writing = write();
      this.underWay.set(key, { writing, bodyDigest });
      const settled = () => {
        this.underWay.delete(key);
        release();
      };
      writing.then(settled, settled);
      return writing;
    }
    const sameBytes = bodyDigest === sharing.bodyDigest;
    return sharing.writing.finally(release).then((found) => {
      if (found === 'collision' && !sameBytes) return this.run(key, size, write, bodyDigest);
      return found === 'collision' || !sameBytes ? 'collision' : 'duplicate';
    });
  }
}
