import { answerJson, JSON_CONTENT_TYPE } from '../answers';
import { readFetchBody } from '../body/read-fetch-body';
import { toDeliveryHeaders } from '../headers/delivery-headers';
import type { DeliveryPipeline } from '../pipeline/delivery-pipeline';

/** A handler for Fetch API runtimes: Next.js route handlers, Hono, Bun, Deno. */
export type FetchHandler = (request: Request) => Promise<Response>;

/** The Fetch adapter: how to read a `Request`, and the answer as a `Response`. */
export function createFetchHandler(pipeline: DeliveryPipeline): FetchHandler {
  return async function mitpoWebhooksFetchHandler(request: Request): Promise<Response> {
    if (typeof (request as Partial<Request> | null)?.headers?.get !== 'function') {
      throw new TypeError('mitpo-webhooks: the fetch handler takes a Fetch API Request');
    }
    const outcome = await pipeline.process({
      method: request.method,
      headers: toDeliveryHeaders(request.headers),
      readBody: (options) => readFetchBody(request, options),
    });
    // The Response sets Content-Length itself from the text.
    return new Response(answerJson(outcome), {
      status: outcome.status,
      headers: { 'content-type': JSON_CONTENT_TYPE, ...outcome.error?.headers },
    });
  };
}
