import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { WebhookResponseBody } from '../answers';
import { checkOptionKeys } from '../option-keys';
import { signedDelivery, type SignedDelivery, type SignedDeliveryOptions } from './signed-delivery';

/** Where to send: a URL, an `http.Server` (listening or not), or a request listener such as an Express app. */
export type DeliveryTarget = string | URL | http.Server | http.RequestListener;

/** What the receiver answered. */
export interface DeliveryResult {
  status: number;
  /** The parsed JSON answer (MITPO's envelope when the receiver is this library). */
  body: WebhookResponseBody;
  headers: Headers;
  /** The delivery that was sent, to send again (a replay) or to inspect. */
  delivery: SignedDelivery;
}

/** Options of {@link sendDelivery}. */
export interface SendDeliveryOptions {
  /** Path to POST to when the target is an app or server (a URL is sent to as given). Default `/webhooks/mitpo`. */
  path?: string | undefined;
}

/**
 * Signs a delivery (or takes one already built) and POSTs it to an app, server or
 * URL over real HTTP on the loopback, returning the answer. An answer that is not JSON
 * (a framework's 404 page) is given as `body` `{ success: false, error: { code:
 * 'not_json', message } }`, the message its first 500 characters. An app or a server that
 * is not listening is started on a free port for the call and stopped after it (after the
 * last of the calls side by side on one server).
 * Options (rather than a built delivery) go through {@link signedDelivery}: without
 * `data`, every call sends a fresh sample, never a duplicate of the previous one.
 *
 * @example
 * const { status, body } = await sendDelivery(app, { event: 'dispatch.completed', secret });
 * expect(status).toBe(200);
 */
export async function sendDelivery(
  target: DeliveryTarget,
  delivery: SignedDelivery | SignedDeliveryOptions<string>,
  options: SendDeliveryOptions = {},
): Promise<DeliveryResult> {
  checkOptionKeys(options, 'sendDelivery()', ['path']);
  const built = 'body' in delivery && 'headers' in delivery ? delivery : signedDelivery(delivery);
  const path = options.path ?? '/webhooks/mitpo';
  if (typeof target === 'string' || target instanceof URL) {
    if (options.path !== undefined) throw new TypeError('mitpo-webhooks/testing: sendDelivery() path is for an app or a server: a URL is sent to as given');
    return post(String(target), built);
  }

  if (!(target instanceof http.Server) && typeof target !== 'function') {
    throw new TypeError(
      'mitpo-webhooks/testing: sendDelivery() needs a URL, an http.Server or a request listener: ' +
        "for Koa pass app.callback(), for Fastify app.server once it is ready",
    );
  }
  const server = target instanceof http.Server ? target : http.createServer(target);
  const started = startedServers.get(server) ?? (server.listening ? undefined : start(server));
  if (started === undefined) return post(urlOf(server, path), built);
  started.calls += 1;
  try {
    await started.listening;
    return await post(urlOf(server, path), built);
  } finally {
    started.calls -= 1;
    if (started.calls === 0) {
      startedServers.delete(server);
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }
}

/**
 * Servers sendDelivery() started, each with the calls using it: the last call to
 * end stops it, so calls side by side on one unstarted server (a test file's
 * shared server, `describe.concurrent`) do not cut each other off.
 */
const startedServers = new WeakMap<http.Server, { calls: number; listening: Promise<void> }>();

function start(server: http.Server): { calls: number; listening: Promise<void> } {
  const started = { calls: 0, listening: new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)) };
  startedServers.set(server, started);
  return started;
}

/** The URL of `path` on a listening server: its own address, the loopback for a wildcard one. */
function urlOf(server: http.Server, path: string): string {
  const { address, family, port } = server.address() as AddressInfo;
  const host = address === '0.0.0.0' || address === '::' ? '127.0.0.1' : family === 'IPv6' ? `[${address}]` : address;
  return `http://${host}:${port}${path}`;
}

async function post(url: string, delivery: SignedDelivery): Promise<DeliveryResult> {
  const response = await fetch(url, { method: 'POST', headers: delivery.headers, body: delivery.body });
  const text = await response.text();
  let body: WebhookResponseBody;
  try {
    body = JSON.parse(text) as WebhookResponseBody;
  } catch {
    body = { success: false, error: { code: 'not_json', message: text.slice(0, 500) } };
  }
  return { status: response.status, body, headers: response.headers, delivery };
}
