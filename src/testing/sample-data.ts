import { randomBytes } from 'node:crypto';
import type * as z from 'zod/mini';
import { isMitpoEventName, type MitpoEventName, type mitpoEventSchemas } from '../events/schemas';

/**
 * `data` as the event schema takes it in: what a sender writes, where fields MITPO
 * may leave out are optional (the parsed event's type has them `T | undefined`).
 */
type SampleDataOf<N extends MitpoEventName> = z.input<(typeof mitpoEventSchemas)[N]>['data'];

/**
 * Plausible `data` for each known event type, shaped like the reference's example.
 * A template: its ids are fixed placeholders. {@link sampleData} (and so
 * `signedDelivery` without `data`) returns a copy with fresh ids.
 */
export const SAMPLE_DATA: { [N in MitpoEventName]: SampleDataOf<N> } = {
  'dispatch.accepted': { dispatch_id: 'dsp_a1b2c3d4', channel: 'meta_ads', status: 'accepted' },
  'dispatch.completed': {
    dispatch_id: 'dsp_a1b2c3d4',
    channel: 'meta_ads',
    status: 'completed',
    provider_resource_id: '23851234567890',
  },
  'dispatch.failed': {
    dispatch_id: 'dsp_a1b2c3d4',
    channel: 'meta_ads',
    status: 'failed',
    error: { code: 'provider_error', message: 'The provider rejected the request' },
  } as SampleDataOf<'dispatch.failed'>,
  'connection.active': { connection_id: 'con_e5f6g7h8', channel: 'meta_ads' },
  'connection.reauth_required': { connection_id: 'con_e5f6g7h8', channel: 'meta_ads', reason: 'token_expired' },
};

/**
 * A sample `data` for an event type, with fresh ids on every call: `dispatch_id`
 * (`dsp_` + 16 hex digits) for `dispatch.*`, `connection_id` (`con_` + 16 hex
 * digits) for `connection.*`, and `sample_id` (`smp_` + 16 hex digits) as the
 * only field for a type this version does not know.
 *
 * Fresh ids matter because a receiver de-duplicates on the body: two samples
 * with the same ids, signed in the same second, would be the same delivery and
 * the second would be answered as a duplicate without running any handler.
 *
 * @example
 * const data = sampleData('dispatch.completed');   // { dispatch_id: 'dsp_9f2c…', channel: 'meta_ads', ... }
 */
export function sampleData<N extends string>(event: N): N extends MitpoEventName ? SampleDataOf<N> : Record<string, unknown>;
export function sampleData(event: string): Record<string, unknown> {
  if (!isMitpoEventName(event)) return { sample_id: freshId('smp_') };
  // A deep copy, so a test that changes its sample never changes the template.
  const data = structuredClone(SAMPLE_DATA[event]) as Record<string, unknown>;
  if ('dispatch_id' in data) data.dispatch_id = freshId('dsp_');
  if ('connection_id' in data) data.connection_id = freshId('con_');
  return data;
}

function freshId(prefix: string): string {
  return `${prefix}${randomBytes(8).toString('hex')}`;
}
