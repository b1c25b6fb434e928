export { BullMQDeliveryQueue, type BullMQDeliveryQueueOptions } from './bullmq-delivery-queue';
