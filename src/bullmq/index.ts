export { BullMQDeliveryQueue, type BullMQDeliveryQueueOptions } from './bullmq-delivery-queue';
export { jobIdOf } from '../queue/job-id';
