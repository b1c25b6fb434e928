// A worker process of `npm run soak -- --queue`: handlers that fail at random 20%
// of the time, reporting to the parent when a handler starts, when it succeeds, and
// when the queue has recorded a run as done (so a kill can be judged).
import { MitpoWebhooks } from 'mitpo-webhooks';
import { BullMQDeliveryQueue } from 'mitpo-webhooks/bullmq';

const queue = new BullMQDeliveryQueue({
  connection: { url: process.env.REDIS_URL! },
  name: process.env.SOAK_QUEUE!,
  lockDuration: 1,
});
const webhooks = new MitpoWebhooks({ secret: process.env.SOAK_SECRET!, queue });
webhooks.on(['dispatch.completed', 'dispatch.failed'], async (event) => {
  // What the attacker wrote to Redis must never get here: reported, to be counted.
  if (!event.data.dispatch_id.startsWith('dsp_')) {
    process.send!({ attackerRan: event.data.dispatch_id });
    return;
  }
  const seq = Number(event.data.dispatch_id.slice(4));
  process.send!({ started: seq });
  // A few milliseconds of I/O, so a kill finds handlers mid-run.
  await new Promise((resolve) => setTimeout(resolve, Math.random() * 10));
  if (Math.random() < 0.2) {
    process.send!({ failed: seq });
    throw new Error('random failure');
  }
  process.send!({ handled: seq });
});
webhooks.onDeadLetter((event) => process.send!({ deadLetter: event?.data && 'dispatch_id' in event.data ? String(event.data.dispatch_id) : '(unread)' }));
webhooks.startWorker({ concurrency: 16 });
process.send!({ ready: true });
