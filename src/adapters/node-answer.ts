import type { IncomingMessage } from 'node:http';
import { answerJson, JSON_CONTENT_TYPE, type Outcome } from '../answers';

/** An outcome as the status, headers and JSON text a Node-based framework writes. */
export interface NodeAnswer {
  status: number;
  headers: Record<string, string>;
  json: string;
}

export function nodeAnswer(req: IncomingMessage, outcome: Outcome): NodeAnswer {
  const json = answerJson(outcome);
  const headers: Record<string, string> = {
    'content-type': JSON_CONTENT_TYPE,
    'content-length': String(Buffer.byteLength(json)),
    ...outcome.error?.headers,
  };
  // A refused body that was never read would otherwise be drained by Node to keep
  // the connection alive; closing it bounds what a hostile sender can make us read.
  // (HTTP/2 has no such header: there the answer ends the stream, not the connection.)
  if (!req.readableEnded && req.httpVersionMajor < 2) headers.connection = 'close';
  return { status: outcome.status, headers, json };
}
