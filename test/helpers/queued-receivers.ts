import { MitpoWebhooks, type MitpoWebhooksOptions } from '../../src';
import { BullMQDeliveryQueue, type BullMQDeliveryQueueOptions } from '../../src/bullmq';
import type { DeliveryQueue } from '../../src/queue/delivery-queue';
import { SECRET } from './recorder';
import { REDIS_URL } from './redis';

/**
 * Receivers on a BullMQ queue, for one suite: each test's queue is named by
 * queueName() (read when a receiver is built), with a short backoff and lock so
 * that retries and stalled jobs show within a test. closeAll() closes every
 * receiver built since the last call.
 */
export function queuedReceivers(queueName: () => string) {
  const opened: MitpoWebhooks[] = [];

  /** A receiver on the suite's BullMQ queue (these options override the defaults), or on the queue given. */
  function receiver(queue: Partial<BullMQDeliveryQueueOptions> | DeliveryQueue = {}, options: Partial<MitpoWebhooksOptions> = {}) {
    const deliveryQueue =
      'enqueue' in queue
        ? queue
        : new BullMQDeliveryQueue({ connection: { url: REDIS_URL! }, name: queueName(), backoff: 0.05, lockDuration: 1, ...queue });
    const webhooks = new MitpoWebhooks({ secret: SECRET, queue: deliveryQueue, ...options });
    opened.push(webhooks);
    return webhooks;
  }

  const closeAll = () => Promise.all(opened.splice(0).map((webhooks) => webhooks.close({ timeout: 1 })));

  return { receiver, closeAll };
}
