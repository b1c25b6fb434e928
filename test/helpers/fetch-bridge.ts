import http from 'node:http';
import { Readable } from 'node:stream';
import type { FetchHandler } from '../../src';
import type { RequestSpec } from './check-cases';

/** A Fetch `Request` from a check case; a repeated header is appended, as a Fetch client would send it. */
export function toRequest(url: string, spec: RequestSpec): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(spec.headers)) {
    for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item);
  }
  const method = spec.method ?? 'POST';
  return new Request(url, { method, headers, body: method === 'GET' || method === 'HEAD' ? undefined : (spec.body as BodyInit) });
}

/** node:http in front of a Fetch handler, as Hono's or Next.js's Node adapters put one. */
export function fetchBridge(handler: FetchHandler): http.Server {
  return http.createServer(async (req, res) => {
    const headers = new Headers();
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    const request = new Request(`http://127.0.0.1${req.url}`, {
      method: req.method,
      headers,
      body: hasBody ? (Readable.toWeb(req) as ReadableStream<Uint8Array>) : undefined,
      duplex: 'half',
    } as RequestInit);
    const response = await handler(request);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(Buffer.from(await response.arrayBuffer()));
  });
}
