// Type-level tests: checked by `npm run typecheck` (tsc), never run. Each
// expect-error directive below fails the typecheck if its line stops being an error.
import { WebhookEndpointsClient, type CreateWebhookEndpointInput } from 'mitpo-webhooks/api';
import type { MitpoEventName } from 'mitpo-webhooks';
import { expectType, type Equal } from './expect-type';

// Found by a hunt: `events` was `string[]`, so a misspelt name compiled and create() threw.
expectType<Equal<CreateWebhookEndpointInput['events'], MitpoEventName[]>>();

export async function register(endpoints: WebhookEndpointsClient): Promise<void> {
  await endpoints.create({ url: 'https://example.com/webhooks/mitpo', events: ['dispatch.completed', 'connection.active'] });
  // @ts-expect-error: not an event MITPO sends
  await endpoints.create({ url: 'https://example.com/webhooks/mitpo', events: ['dispatch.complete'] });
}
