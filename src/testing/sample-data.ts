import type { MitpoEventName, MitpoEventOf } from '../events/schemas';

/** Plausible `data` for each known event type, shaped like the reference's example. */
export const SAMPLE_DATA: { [N in MitpoEventName]: MitpoEventOf<N>['data'] } = {
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
  } as MitpoEventOf<'dispatch.failed'>['data'],
  'connection.active': { connection_id: 'con_e5f6g7h8', channel: 'meta_ads' },
  'connection.reauth_required': { connection_id: 'con_e5f6g7h8', channel: 'meta_ads', reason: 'token_expired' },
};
