import type { MitpoWebhooksOptions } from '../options';
import { webPlatform } from '../platform/web-platform';
import { WebhooksCore } from '../receiver/webhooks-core';

/** Options of `new MitpoWebhooks()` from `mitpo-webhooks/web`: Node's, with `ctx.rawBody` a `Uint8Array` and no `queue`. */
export type WebMitpoWebhooksOptions = Omit<MitpoWebhooksOptions<Uint8Array>, 'queue'>;

/**
 * Receives MITPO webhooks on Web runtimes (Cloudflare Workers, Deno, Bun,
 * Vercel and Netlify edge functions, and Node 20+ too): the same checks, codes,
 * handlers and answers as Node's `MitpoWebhooks`, with WebCrypto for the
 * signature and the delivery key, and `ctx.rawBody` a `Uint8Array`. Serve it
 * with `fetchHandler()`, or call `receive()` / `verify()`.
 *
 * @example
 * const webhooks = new MitpoWebhooks({ secret: env.MITPO_WEBHOOK_SECRET });
 * webhooks.on('dispatch.completed', async (event) => markDone(event.data.dispatch_id));
 * export default { fetch: webhooks.fetchHandler() };
 */
export class MitpoWebhooks extends WebhooksCore<Uint8Array> {
  /**
   * @param options - `secret` is required; see {@link WebMitpoWebhooksOptions} for the rest and their defaults
   * @throws TypeError on a missing, empty, padded or quoted secret (or only its `whsec_` prefix), a
   *   duration that is not a positive number of seconds (or can only be milliseconds), a bad `limit`,
   *   an unknown `replay` value, a `queue` (its workers are Node's) or an unknown option
   */
  constructor(options: WebMitpoWebhooksOptions) {
    if (typeof options === 'object' && options !== null && 'queue' in options && options.queue !== undefined) {
      throw new TypeError('mitpo-webhooks/web: the queue option is not available on Web runtimes (its workers need Node); use mitpo-webhooks on Node for a queue');
    }
    super(options, webPlatform);
  }
}
