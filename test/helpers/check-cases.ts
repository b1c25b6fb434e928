import type { MitpoWebhooks, MitpoWebhooksOptions, ReplayStore } from '../../src';
import { sign } from '../../src';
import { SAMPLE_DATA, signedDelivery } from '../../src/testing';
import { nowInSeconds } from './clock';
import type { Reply } from './http-client';
import { SECRET } from './recorder';

export interface RequestSpec {
  method?: string;
  headers: Record<string, string | string[]>;
  body: string | Buffer;
}

/** One row of API.md's table of checks, as a request and the answer it must get. */
export interface CheckCase {
  name: string;
  status: number;
  /** The error code, or 'success' / 'duplicate'. */
  outcome: string;
  /** Handler runs expected in total, priming request included. */
  runs: number;
  options?: Partial<MitpoWebhooksOptions>;
  setup?: (webhooks: MitpoWebhooks) => void;
  /** A JSON body parser that keeps no bytes runs before the middleware. */
  jsonParserFirst?: boolean;
  /** Sends the same request once before the one under test. */
  sendTwice?: boolean;
  request: () => RequestSpec;
  /** Transports that cannot express this request (e.g. Fetch forbids a repeated header as an array). */
  skipFor?: string[];
}

/** A minute ago, to the second: a body built twice from it is the same bytes. */
const FIXED_EVENT_TIME = nowInSeconds() - 60;

function delivery(overrides: Parameters<typeof signedDelivery>[0] extends infer O ? Partial<O> : never = {}): RequestSpec {
  const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET, ...overrides } as never);
  return { headers, body };
}

function withHeaders(spec: RequestSpec, change: (headers: Record<string, string | string[]>) => void): RequestSpec {
  const headers = { ...spec.headers };
  change(headers);
  return { ...spec, headers };
}

/** A body signed correctly but built by hand, for payloads signedDelivery would not produce. */
function signedBody(body: string, event = 'dispatch.completed'): RequestSpec {
  return {
    body,
    headers: {
      'Content-Type': 'application/json',
      'X-MITPO-Signature': sign(body, SECRET),
      'X-MITPO-Timestamp': String(nowInSeconds()),
      'X-MITPO-Event': event,
    },
  };
}

const throwingStore: ReplayStore = {
  claim: () => Promise.reject(new Error('ECONNREFUSED 127.0.0.1:6379')),
  complete: () => Promise.resolve(),
  release: () => Promise.resolve(),
};

export const CHECK_CASES: CheckCase[] = [
  { name: 'a valid delivery', status: 200, outcome: 'success', runs: 2, request: () => delivery() },
  {
    // Not part of a header's value (RFC 9110): Node's parser drops them, workerd hands them on.
    name: 'a valid delivery whose header values have spaces and tabs around them',
    status: 200,
    outcome: 'success',
    runs: 2,
    request: () => {
      const { headers, body } = delivery();
      return { body, headers: Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, ` ${String(value)} \t`])) };
    },
  },
  {
    name: 'a method other than POST',
    status: 405,
    outcome: 'method_not_allowed',
    runs: 0,
    request: () => ({ ...delivery(), method: 'PUT' }),
  },
  {
    name: 'a Content-Type that is not JSON',
    status: 415,
    outcome: 'unsupported_media_type',
    runs: 0,
    request: () => withHeaders(delivery(), (h) => (h['Content-Type'] = 'text/plain')),
  },
  {
    // Not even a media type: Fastify 5 refuses it before any parser, so it must still come to us.
    name: 'a Content-Type that is not a media type',
    status: 415,
    outcome: 'unsupported_media_type',
    runs: 0,
    request: () => withHeaders(delivery(), (h) => (h['Content-Type'] = 'json')),
  },
  {
    name: 'a compressed body (Content-Encoding: gzip)',
    status: 415,
    outcome: 'unsupported_media_type',
    runs: 0,
    request: () => withHeaders(delivery(), (h) => (h['Content-Encoding'] = 'gzip')),
  },
  {
    name: 'no X-MITPO-Signature',
    status: 400,
    outcome: 'missing_signature',
    runs: 0,
    request: () => withHeaders(delivery(), (h) => delete h['X-MITPO-Signature']),
  },
  {
    name: 'a signature in uppercase hex',
    status: 400,
    outcome: 'malformed_signature',
    runs: 0,
    request: () => withHeaders(delivery(), (h) => (h['X-MITPO-Signature'] = `sha256=${(h['X-MITPO-Signature'] as string).slice(7).toUpperCase()}`)),
  },
  {
    name: 'a signature header sent twice',
    status: 400,
    outcome: 'malformed_signature',
    runs: 0,
    skipFor: ['fetch'],
    request: () => withHeaders(delivery(), (h) => (h['X-MITPO-Signature'] = [h['X-MITPO-Signature'] as string, h['X-MITPO-Signature'] as string])),
  },
  {
    name: 'no X-MITPO-Timestamp',
    status: 400,
    outcome: 'missing_timestamp',
    runs: 0,
    request: () => withHeaders(delivery(), (h) => delete h['X-MITPO-Timestamp']),
  },
  {
    name: 'a timestamp that is not unix seconds',
    status: 400,
    outcome: 'malformed_timestamp',
    runs: 0,
    request: () => withHeaders(delivery(), (h) => (h['X-MITPO-Timestamp'] = '2026-03-22T10:30:00Z')),
  },
  {
    name: 'a timestamp header past the tolerance',
    status: 401,
    outcome: 'timestamp_out_of_tolerance',
    runs: 0,
    // A minute outside: the exact edges are tested against a fixed clock in receive.test.ts;
    // here the real clock may tick between building the request and checking it.
    request: () => delivery({ sentAt: nowInSeconds() - 360 }),
  },
  {
    name: 'a timestamp header ahead of the tolerance',
    status: 401,
    outcome: 'timestamp_out_of_tolerance',
    runs: 0,
    request: () => delivery({ sentAt: nowInSeconds() + 360 }),
  },
  {
    name: 'a body larger than the limit',
    status: 413,
    outcome: 'payload_too_large',
    runs: 0,
    options: { limit: 1024 },
    request: () => delivery({ data: { dispatch_id: 'dsp_1', channel: 'x'.repeat(2000), status: 'completed' } }),
  },
  {
    name: 'a body another parser consumed without keeping the bytes',
    status: 500,
    outcome: 'body_already_parsed',
    runs: 0,
    jsonParserFirst: true,
    skipFor: ['fetch', 'receive'],
    request: () => delivery(),
  },
  {
    name: 'a signature made with another secret',
    status: 401,
    outcome: 'invalid_signature',
    runs: 0,
    request: () => delivery({ secret: 'whsec_someone_else' }),
  },
  {
    name: 'a body changed after signing',
    status: 401,
    outcome: 'invalid_signature',
    runs: 0,
    request: () => {
      const spec = delivery();
      return { ...spec, body: (spec.body as string).replace('"channel":"meta_ads"', '"channel":"meta_adz"') };
    },
  },
  {
    name: 'a signed body that is not JSON',
    status: 400,
    outcome: 'invalid_json',
    runs: 0,
    request: () => signedBody('{"event": "dispatch.completed", '),
  },
  {
    name: 'a signed body that fails the event schema',
    status: 400,
    outcome: 'invalid_payload',
    runs: 0,
    request: () =>
      signedBody(JSON.stringify({ event: 'dispatch.completed', timestamp: new Date().toISOString(), data: { channel: 'meta_ads' } })),
  },
  {
    name: 'an X-MITPO-Event that differs from the body',
    status: 400,
    outcome: 'event_mismatch',
    runs: 0,
    request: () => withHeaders(delivery(), (h) => (h['X-MITPO-Event'] = 'dispatch.failed')),
  },
  {
    name: 'a signed event older than maxEventAge',
    status: 401,
    outcome: 'event_too_old',
    runs: 0,
    request: () => delivery({ timestamp: nowInSeconds() - 259_200 - 60 }),
  },
  {
    name: 'a signed event ahead by more than the tolerance',
    status: 401,
    outcome: 'event_in_future',
    runs: 0,
    request: () => delivery({ timestamp: nowInSeconds() + 600 }),
  },
  {
    name: 'the same delivery a second time',
    status: 200,
    outcome: 'duplicate',
    runs: 2,
    sendTwice: true,
    // Fixed data and event time: the request is rebuilt for each send, and must be byte-identical.
    request: () => delivery({ data: SAMPLE_DATA['dispatch.completed'], timestamp: FIXED_EVENT_TIME }),
  },
  {
    name: 'a replay store that cannot be reached',
    status: 503,
    outcome: 'replay_store_unavailable',
    runs: 0,
    options: { replay: throwingStore },
    request: () => delivery(),
  },
  {
    name: 'a handler that throws',
    status: 500,
    outcome: 'handler_failed',
    // The recording handlers run beside the failing one; what matters is the 500.
    runs: 2,
    setup: (webhooks) =>
      webhooks.on('dispatch.completed', () => {
        throw new Error('database is down');
      }),
    request: () => delivery(),
  },
  {
    name: 'a correctly signed event of an unknown type',
    status: 200,
    outcome: 'success',
    runs: 1,
    request: () => delivery({ event: 'dispatch.cancelled', data: { dispatch_id: 'dsp_1' } } as never),
  },
];

/** The answer a row of the table must get, in MITPO's envelope, whatever serves it. */
export function expectAnswer(check: CheckCase, reply: Reply): void {
  expect(reply.status).toBe(check.status);
  expect(reply.headers['content-type']).toBe('application/json; charset=utf-8');
  if (check.outcome === 'success') expect(reply.json).toEqual({ success: true });
  else if (check.outcome === 'duplicate') expect(reply.json).toEqual({ success: true, duplicate: true });
  else {
    expect(reply.json.success).toBe(false);
    expect(reply.json.error?.code).toBe(check.outcome);
    expect(reply.json.error?.message).toEqual(expect.any(String));
  }
  if (check.status === 405) expect(reply.headers.allow).toBe('POST');
}
