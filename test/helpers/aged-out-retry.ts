import type { DeliveryContext, MitpoWebhooks } from '../../src';
import { signedDelivery } from '../../src/testing';
import { deliver } from './deliver';
import { SECRET } from './recorder';
import { waitFor } from './redis';

/**
 * With `ordering` on a queued receiver whose `maxEventAge` plus `tolerance` is
 * `retentionMs`: a dispatch.accepted that fails its only attempt (a dead
 * letter; `fail` makes it fail, by default by throwing), then its
 * dispatch.completed applied; once that position's
 * retention has passed, an operator retries the dead letter. Resolves with the
 * events whose handlers succeeded and those told to onStale.
 */
export async function agedOutRetry(
  webhooks: MitpoWebhooks,
  {
    retentionMs,
    isDeadLetter,
    retry,
    fail = () => {
      throw new Error('the CRM is down');
    },
  }: { retentionMs: number; isDeadLetter: (body: string) => Promise<boolean>; retry: (body: string) => Promise<unknown>; fail?: (ctx: DeliveryContext) => unknown },
): Promise<{ applied: string[]; stale: string[] }> {
  const applied: string[] = [];
  const stale: string[] = [];
  let failAccepted = true;
  webhooks.on(['dispatch.accepted', 'dispatch.completed'], async (event, ctx) => {
    if (event.event === 'dispatch.accepted' && failAccepted) await fail(ctx);
    applied.push(event.event);
  });
  webhooks.onStale((event) => void stale.push(event.event));
  webhooks.startWorker();
  const at = Date.now();
  const data = { dispatch_id: 'dsp_aged_out', channel: 'email' };
  const accepted = signedDelivery({ event: 'dispatch.accepted', secret: SECRET, timestamp: new Date(at), data: { ...data, status: 'accepted' } });
  await deliver(webhooks, accepted);
  await waitFor(() => isDeadLetter(accepted.body));
  await deliver(webhooks, signedDelivery({ event: 'dispatch.completed', secret: SECRET, timestamp: new Date(at + 1000), data: { ...data, status: 'completed' } }));
  await waitFor(() => applied.includes('dispatch.completed'));
  // What is waited for here is the scenario itself: the retention of the applied position passing.
  const appliedAt = Date.now();
  await waitFor(() => Date.now() > appliedAt + retentionMs + 500);
  failAccepted = false;
  await retry(accepted.body);
  await waitFor(() => stale.length > 0 || applied.includes('dispatch.accepted'));
  return { applied, stale };
}
