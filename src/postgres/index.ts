/// <reference types="node" preserve="true" />
// Its types use Node's: see src/index.ts.
export { PostgresDeliveryQueue, type PostgresDeliveryQueueOptions } from './postgres-delivery-queue';
