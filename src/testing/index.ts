/// <reference types="node" preserve="true" />
// Its types use Node's: see src/index.ts.
export { signedDelivery, type SignedDelivery, type SignedDeliveryOptions, type Moment } from './signed-delivery';
export { sendDelivery, type DeliveryTarget, type DeliveryResult, type SendDeliveryOptions } from './send-delivery';
export { SAMPLE_DATA, sampleData } from './sample-data';
export { MemoryDeliveryQueue, type MemoryDeliveryQueueOptions, type MemoryDeadLetter } from './memory-delivery-queue';
