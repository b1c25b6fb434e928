import { PendingEnqueues, type EnqueueResult } from '../../src/queue/pending-enqueues';

/** A store write that settles when the test says. */
function heldWrite() {
  let settle!: (result: EnqueueResult) => void;
  const promise = new Promise<EnqueueResult>((resolve) => (settle = resolve));
  return { write: () => promise, settle };
}

describe('PendingEnqueues: the enqueues under way in one process', () => {
  it('counts a copy waiting for the write under way, so the bodies held stay within maxPendingBytes', async () => {
    const pending = new PendingEnqueues(100, 'Redis');
    const first = heldWrite();
    const writing = pending.run('k', 60, first.write);
    // The copy holds its own body while it waits: past the cap it is refused at once.
    const copy = pending.run('k', 60, () => Promise.reject(new Error('never written: it shares the write under way')));
    first.settle('queued');
    await expect(copy).rejects.toThrow('more than maxPendingBytes (100) of deliveries are waiting for Redis');
    await expect(writing).resolves.toBe('queued');
    // Once the write settled, its bytes and the copies' are free again.
    await expect(pending.run('k', 100, () => Promise.resolve('duplicate'))).resolves.toBe('duplicate');
  });

  it('answers a copy duplicate, and other bytes under a key of the app\'s own a collision, once the shared write settles', async () => {
    const pending = new PendingEnqueues(1000, 'Postgres');
    const first = heldWrite();
    const writing = pending.run('k', 10, first.write, 'digest-a');
    const copy = pending.run('k', 10, first.write, 'digest-a');
    const other = pending.run('k', 10, first.write, 'digest-b');
    first.settle('queued');
    await expect(Promise.all([writing, copy, other])).resolves.toEqual(['queued', 'duplicate', 'collision']);
  });

  it('when the shared write found yet other bytes, answers a copy of the writer a collision and lets other bytes look for themselves', async () => {
    const pending = new PendingEnqueues(1000, 'Postgres');
    const first = heldWrite();
    const writing = pending.run('k', 10, first.write, 'digest-b');
    let ownWrites = 0;
    const lookForItself = () => {
      ownWrites += 1;
      return Promise.resolve<EnqueueResult>('duplicate');
    };
    const copyOfWriter = pending.run('k', 10, lookForItself, 'digest-b');
    const stored = pending.run('k', 10, lookForItself, 'digest-a');
    first.settle('collision');
    await expect(Promise.all([writing, copyOfWriter, stored])).resolves.toEqual(['collision', 'collision', 'duplicate']);
    expect(ownWrites).toBe(1);
  });
});
