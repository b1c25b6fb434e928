/// <reference types="node" preserve="true" />
// Its types use Node's: see src/index.ts.
export { BullMQDeliveryQueue, type BullMQDeliveryQueueOptions } from './bullmq-delivery-queue';
