import type { MitpoWebhooks } from '../../src';

/** Hands a signed delivery (as signedDelivery() builds it) straight to webhooks.receive(), with no server. */
export function deliver(webhooks: MitpoWebhooks, delivery: { body: string; headers: Record<string, string> }) {
  return webhooks.receive({ rawBody: delivery.body, headers: delivery.headers });
}
