import { readSeconds } from '../duration-option';
import { checkOptionKeys } from '../option-keys';
import type { z } from 'zod';
import { sanitizeText } from '../text/sanitize-text';
import { MitpoApiError } from './mitpo-api-error';
import { readLimitedBody, type LimitedBody } from './read-limited-body';
import {
  apiEnvelope,
  createdWebhookEndpointSchema,
  createWebhookEndpointInputSchema,
  deletedWebhookEndpointSchema,
  webhookEndpointSchema,
  type CreatedWebhookEndpoint,
  type CreateWebhookEndpointInput,
  type WebhookEndpoint,
} from './schemas';

/** Options of {@link WebhookEndpointsClient}. */
export interface WebhookEndpointsClientOptions {
  /** A MITPO API key (`mk_live_...`), sent as the Bearer token. */
  apiKey: string;
  /** Default `https://api.mitpo.io`. */
  baseUrl?: string | undefined;
  /** Seconds before a call gives up (fractions allowed, at most 600), like every duration in this library. Default 15. */
  timeout?: number | undefined;
  /** The fetch to use. Default the global one. */
  fetch?: typeof fetch | undefined;
}

/**
 * The most of any answer the client reads: MITPO's answers are a few hundred bytes,
 * and a bigger one (a misconfigured base URL, a hostile server) must not fill memory.
 */
export const MAX_ANSWER_BYTES = 1024 * 1024;

/**
 * Whether `key` can be a MITPO API key: printable ASCII, nothing else (no space,
 * no control character). A key with a line break pasted into it is refused here,
 * never quoted: fetch would refuse it as a header value, quoting it in its message.
 */
export function isApiKey(key: unknown): key is string {
  return typeof key === 'string' && /^[\x21-\x7e]+$/.test(key);
}

const createdEnvelope = apiEnvelope(createdWebhookEndpointSchema);
const listEnvelope = apiEnvelope(webhookEndpointSchema.array());
const deletedEnvelope = apiEnvelope(deletedWebhookEndpointSchema);

const BASE_URL_RULE = 'baseUrl must be an http(s) URL without a user name, password, query or fragment, e.g. https://api.mitpo.io';

/**
 * The base URL as requests are built from it: parsed, since a query or a
 * fragment would move every request's path, and never echoed when it holds
 * credentials, which error messages would otherwise print.
 */
function checkedBaseUrl(given: unknown): string {
  const text = typeof given === 'string' ? given : '';
  const url = URL.canParse(text) ? new URL(text) : undefined;
  // Read from the text, not the parsed URL: one that does not parse may hold a password too.
  const secretive = /@|\?/.test(text);
  // A bare `?` or `#` leaves search and hash empty, and is no base for a path either.
  if (url === undefined || secretive || !/^https?:\/\/[^/]/i.test(text) || text.includes('#')) {
    // Nor a value with no scheme at all: with the settings swapped, that is the API key.
    const shown = secretive
      ? 'a URL with a user name, password or query, not shown'
      : /^[a-z][a-z0-9+.-]*:/i.test(text)
        ? JSON.stringify(sanitizeText(String(given), 200))
        : 'a value that is no URL, not shown';
    throw new TypeError(`mitpo-webhooks: ${BASE_URL_RULE} (got ${shown})`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/**
 * The code and message of an error answer, each read on its own, so a partial answer
 * still yields what it has (`error` as a plain string is its message).
 */
function errorFieldsOf(json: unknown): { code?: string; message?: string } {
  const error = (json as { error?: unknown } | null | undefined)?.error;
  if (typeof error === 'string') return { message: error };
  const { code, message } = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; message?: unknown };
  return { ...(typeof code === 'string' && { code }), ...(typeof message === 'string' && { message }) };
}

/**
 * MITPO's `/v1/webhooks` API: register, list and delete the endpoints MITPO
 * delivers webhooks to. Every answer is validated against MITPO's
 * `{ success, data, request_id }` envelope. Redirects are never followed (they
 * would carry the API key elsewhere), at most {@link MAX_ANSWER_BYTES} of an
 * answer is read, and server text in error messages is stripped of control characters.
 *
 * @example
 * const endpoints = new WebhookEndpointsClient({ apiKey: process.env.MITPO_API_KEY! });
 * const { id, signing_secret } = await endpoints.create({ url: 'https://example.com/webhooks/mitpo', events: ['dispatch.completed'] });
 */
export class WebhookEndpointsClient {
  readonly baseUrl: string;
  // A private field, not TypeScript's `private`: that is an ordinary property at run time, which
  // logging or serialising the client (a logger, an error reporter) would print.
  readonly #apiKey: string;
  private readonly timeoutMs: number;
  private readonly fetch: typeof fetch;

  /** @throws TypeError on a missing API key or one with a character no key has, a base URL that is not http(s), or a bad timeout */
  constructor(options: WebhookEndpointsClientOptions) {
    checkOptionKeys(options, 'WebhookEndpointsClient', ['apiKey', 'baseUrl', 'timeout', 'fetch']);
    const apiKey = (options as Partial<WebhookEndpointsClientOptions> | undefined)?.apiKey;
    // Never quoted: a key with a line break pasted into it is still most of a key.
    if (!isApiKey(apiKey)) {
      throw new TypeError(
        'mitpo-webhooks: apiKey must be a MITPO API key: printable ASCII, without white space or line breaks (is one pasted into it?), e.g. process.env.MITPO_API_KEY',
      );
    }
    this.#apiKey = apiKey;
    this.baseUrl = checkedBaseUrl(options.baseUrl ?? 'https://api.mitpo.io');
    // AbortSignal.timeout takes whole milliseconds; the seconds rule keeps it in range.
    this.timeoutMs = Math.ceil(readSeconds(options.timeout, { name: 'timeout', fallback: 15, max: 600 })! * 1000);
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  /**
   * Registers an endpoint. The answer is the only time MITPO shows its `signing_secret`.
   * @throws TypeError on a URL that is not https or an unknown event type; MitpoApiError when the call fails
   */
  async create(input: CreateWebhookEndpointInput): Promise<CreatedWebhookEndpoint> {
    const checked = createWebhookEndpointInputSchema.safeParse(input);
    if (!checked.success) throw new TypeError(`mitpo-webhooks: ${checked.error.issues[0]?.message ?? 'invalid endpoint'}`);
    return (await this.call('POST', '/v1/webhooks', createdEnvelope, checked.data)).data;
  }

  /** Every registered endpoint. @throws MitpoApiError */
  async list(): Promise<WebhookEndpoint[]> {
    return (await this.call('GET', '/v1/webhooks', listEnvelope)).data;
  }

  /** Deletes an endpoint. @throws MitpoApiError */
  async delete(id: string): Promise<{ id: string; deleted: true }> {
    if (typeof id !== 'string' || !/^[\w-]+$/.test(id)) throw new TypeError('mitpo-webhooks: the endpoint id must look like whk_...');
    return (await this.call('DELETE', `/v1/webhooks/${id}`, deletedEnvelope)).data;
  }

  private async call<S extends z.ZodType>(method: string, path: string, schema: S, body?: unknown): Promise<z.output<S>> {
    const url = `${this.baseUrl}${path}`;
    let response: Response;
    // One signal for the request and the body: a server that trickles its answer times out too.
    const signal = AbortSignal.timeout(this.timeoutMs);
    try {
      response = await this.fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.#apiKey}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        // A redirect would carry the API key to wherever the server points, possibly
        // another origin: never followed, reported instead.
        redirect: 'manual',
        signal,
      });
    } catch (error) {
      throw this.transportError(error, method, path);
    }
    if (response.type === 'opaqueredirect' || (response.status >= 300 && response.status < 400)) {
      await response.body?.cancel().catch(() => {});
      const location = response.headers.get('location');
      throw new MitpoApiError(
        'redirect',
        `MITPO's API answered ${method} ${path} with a redirect (${response.status})` +
          `${location ? ` to ${this.serverText(location, 200)}` : ''}; redirects are not followed: check MITPO_API_BASE_URL`,
        { status: response.status },
      );
    }
    let answer: LimitedBody;
    try {
      answer = await readLimitedBody(response, MAX_ANSWER_BYTES);
    } catch (error) {
      throw this.transportError(error, method, path);
    }
    if (!answer.complete) {
      throw new MitpoApiError(
        'response_too_large',
        `MITPO's API answered ${method} ${path} with ${response.status} and a body larger than ${MAX_ANSWER_BYTES} bytes; it was not read`,
        { status: response.status },
      );
    }
    let json: unknown;
    try {
      json = answer.text === '' ? undefined : JSON.parse(answer.text);
    } catch {
      json = undefined;
    }
    const requestId = this.requestIdOf(json);
    if (!response.ok) {
      const error = errorFieldsOf(json);
      throw new MitpoApiError(
        error?.code ? this.serverText(error.code, 100) : `http_${response.status}`,
        `MITPO's API answered ${method} ${path} with ${response.status}${error?.message ? `: ${this.serverText(error.message, 500)}` : ''}${hint(response.status)}`,
        { status: response.status, requestId },
      );
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue ? `${issue.path.join('.') || 'body'}: ${issue.message}` : 'not JSON';
      throw new MitpoApiError(
        'invalid_response',
        `MITPO's API answered ${method} ${path} with ${response.status} but an unexpected body (${this.serverText(where, 300)})`,
        { status: response.status, requestId, cause: parsed.error },
      );
    }
    return parsed.data;
  }

  /** MITPO's request id, read on its own: an answer of an unexpected shape may still carry it, and support asks for it. */
  private requestIdOf(json: unknown): string | undefined {
    const id = (json as { request_id?: unknown } | null | undefined)?.request_id;
    return typeof id === 'string' ? this.serverText(id, 100) : undefined;
  }

  private transportError(error: unknown, method: string, path: string): MitpoApiError {
    const timedOut = (error as Error | null)?.name === 'TimeoutError';
    return new MitpoApiError(
      timedOut ? 'timeout' : 'network_error',
      timedOut
        ? `MITPO's API at ${this.baseUrl} did not answer ${method} ${path} within ${this.timeoutMs / 1000} s`
        : `Could not reach MITPO's API at ${this.baseUrl} (${this.serverText(describeNetworkError(error), 200)})`,
      { cause: error },
    );
  }

  /**
   * Text from the server or the network (MITPO's code, message or request id, a
   * redirect's target, a field its answer lacked, a connection error), as it may
   * reach an error message, a log or a terminal: stripped of control characters,
   * then of the API key, should it be echoed (stripped first, so characters it
   * strips cannot hide the key).
   */
  private serverText(text: string, maxLength: number): string {
    return sanitizeText(sanitizeText(text, Number.POSITIVE_INFINITY).replaceAll(this.#apiKey, '[redacted]'), maxLength);
  }
}

function hint(status: number): string {
  if (status === 401) return ' (check MITPO_API_KEY)';
  if (status === 403) return ' (the API key lacks permission for webhooks)';
  return '';
}

function describeNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } } | null)?.cause;
  return cause?.code ?? cause?.message ?? (error as Error | null)?.message ?? 'network error';
}
