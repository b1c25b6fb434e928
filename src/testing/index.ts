export { signedDelivery, type SignedDelivery, type SignedDeliveryOptions, type Moment } from './signed-delivery';
export { SAMPLE_DATA } from './sample-data';
