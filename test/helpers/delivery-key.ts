import { createHash } from 'node:crypto';

/** The replay key the receiver gives a delivery by default (ctx.deliveryKey): the SHA-256 of its raw body, in hex. */
export const deliveryKeyOf = (body: string) => createHash('sha256').update(body).digest('hex');
