// A worker in a process of its own, for tests that kill one mid-job: it handles
// queued deliveries and tells the parent over IPC when a handler starts and ends.
// With WORKER_HANG set, every handler starts and never finishes. Sent 'close', it closes the
// receiver, says 'closed' and lets go of IPC: the process must then exit by itself.
import { MitpoWebhooks } from '../../src';
import { BullMQDeliveryQueue } from '../../src/bullmq';

const queue = new BullMQDeliveryQueue({
  connection: { url: process.env.REDIS_URL! },
  name: process.env.QUEUE_NAME!,
  lockDuration: Number(process.env.LOCK_DURATION ?? 1),
  ...(process.env.ENQUEUE_TIMEOUT === undefined ? {} : { enqueueTimeout: Number(process.env.ENQUEUE_TIMEOUT) }),
});
const webhooks = new MitpoWebhooks({ secret: process.env.SECRET!, queue });
webhooks.onAny(async (event, ctx) => {
  process.send!({ started: ctx.deliveryKey, attempt: ctx.attempt });
  if (process.env.WORKER_HANG) await new Promise(() => {});
  process.send!({ handled: ctx.deliveryKey });
});
webhooks.startWorker({ concurrency: 4 });
process.on('message', (message) => {
  if (message !== 'close') return;
  void webhooks.close({ timeout: 1 }).then(() => {
    process.send!({ closed: true });
    process.disconnect();
  });
});
process.send!({ ready: true });
