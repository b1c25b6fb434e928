import { readFetchBody } from '../body/read-fetch-body';
import { JSON_CONTENT_TYPE, type Outcome } from '../answers';
import { asVerificationError, type DeliveryPipeline } from '../receive';
import { methodNotAllowed } from './method-not-allowed';

/** A handler for Fetch API runtimes: Next.js route handlers, Hono, Bun, Deno. */
export type FetchHandler = (request: Request) => Promise<Response>;

export function createFetchHandler(pipeline: DeliveryPipeline): FetchHandler {
  return async function mitpoWebhooksFetchHandler(request: Request): Promise<Response> {
    if (typeof (request as Partial<Request> | null)?.headers?.get !== 'function') {
      throw new TypeError('mitpo-webhooks: the fetch handler takes a Fetch API Request');
    }
    return toResponse(await handle(pipeline, request));
  };
}

async function handle(pipeline: DeliveryPipeline, request: Request): Promise<Outcome> {
  const receivedAt = pipeline.receivedNow();
  const headers = request.headers;
  try {
    if (request.method !== 'POST') throw methodNotAllowed(request.method);
    const checked = pipeline.checkHeaders(headers);
    const rawBody = await readFetchBody(request, pipeline.limit, checked.contentLength, pipeline.bodyDeadlines);
    return await pipeline.handleBody(rawBody, checked, headers, receivedAt);
  } catch (error) {
    return pipeline.fail(asVerificationError(error), headers);
  }
}

function toResponse(outcome: Outcome): Response {
  const headers = new Headers({ 'content-type': JSON_CONTENT_TYPE });
  for (const [name, value] of Object.entries(outcome.error?.headers ?? {})) headers.set(name, value);
  return new Response(outcome.json ?? JSON.stringify(outcome.body), { status: outcome.status, headers });
}
