import type { IncomingMessage } from 'node:http';
import { answerJson, JSON_CONTENT_TYPE, type Outcome } from '../answers';

/** An outcome as the status, headers and JSON text a Node-based framework writes. */
export interface NodeAnswer {
  status: number;
  headers: Record<string, string>;
  json: string;
}

/**
 * @param closing - whether the receiver is shutting down: every answer then
 *   closes its connection, so a client does not send its next request on a
 *   keep-alive connection the server is about to drop (it would be reset, not
 *   answered); it reconnects, and is answered 503 or refused, never cut off.
 */
export function nodeAnswer(req: IncomingMessage, outcome: Outcome, closing = false): NodeAnswer {
  const json = answerJson(outcome);
  const headers: Record<string, string> = {
    'content-type': JSON_CONTENT_TYPE,
    'content-length': String(Buffer.byteLength(json)),
    ...outcome.error?.headers,
  };
  if (closesConnection(req, closing)) headers.connection = 'close';
  return { status: outcome.status, headers, json };
}

/**
 * Whether the answer must close an HTTP/1 connection: while shutting down, or
 * while some of the request has still to arrive. A refused body that was never
 * read would otherwise be drained by Node to keep the connection alive; closing
 * it bounds what a hostile sender can make us read. Nothing is left to arrive
 * once the parser saw the request's end (`complete`), or someone read it to its
 * end (a request built without Node's parser, as by `fastify.inject()`).
 * (HTTP/2 has no such header: there the answer ends the stream, not the connection.)
 */
export function closesConnection(req: IncomingMessage, closing = false): boolean {
  return (closing || !(req.complete || req.readableEnded)) && req.httpVersionMajor < 2;
}
