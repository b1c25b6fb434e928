export { PostgresDeliveryQueue, type PostgresDeliveryQueueOptions } from './postgres-delivery-queue';
