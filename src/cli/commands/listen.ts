import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import type { MitpoEvent, UnknownMitpoEvent } from '../../events/schemas';
import { MitpoWebhooks } from '../../mitpo-webhooks';
import type { WebhookVerificationError } from '../../errors';
import { CommandError, EXIT, UsageError, type CliIo, unexpectedArgument } from '../cli-io';
import { secretFrom } from '../secret-option';
import { sanitizeText } from '../../text/sanitize-text';

export const LISTEN_USAGE = `Usage: mitpo-webhooks listen [--port 3000] [--path /webhooks/mitpo] [--host 127.0.0.1] [--secret <s>]

A local receiver for trying a MITPO configuration by hand: verifies every
delivery with the full checks (signature, freshness, schema, replay) and prints
it, or why it was refused. Stop it with Ctrl-C.

Options:
  --port <n>       port to listen on (default 3000; 0 picks a free one)
  --path <path>    path to receive on (default /webhooks/mitpo)
  --host <host>    address to bind (default 127.0.0.1)
  --secret <s>     the signing secret (default: $MITPO_WEBHOOK_SECRET)
  -h, --help       this help`;

interface Seen {
  event?: MitpoEvent | UnknownMitpoEvent;
  error?: WebhookVerificationError;
}

export async function listen(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: 'string', default: '3000' },
      path: { type: 'string', default: '/webhooks/mitpo' },
      host: { type: 'string', default: '127.0.0.1' },
      secret: { type: 'string' },
    },
  });
  if (positionals.length > 0) throw unexpectedArgument(positionals[0]);
  const port = Number(values.port);
  if (!/^[0-9]+$/.test(values.port) || port > 65_535) throw new UsageError(`--port must be a port number (got ${JSON.stringify(values.port)})`);
  if (!values.path.startsWith('/')) throw new UsageError('--path must start with "/"');
  const secret = secretFrom(values.secret, io.env);

  // Handlers and onFailure see the request's own headers object, which ties what
  // they learn to the response written for that request.
  const seen = new WeakMap<object, Seen>();
  const webhooks = new MitpoWebhooks({ secret });
  webhooks.onAny((event, ctx) => void seen.set(ctx.headers as object, { event }));
  webhooks.onFailure((error, { headers }) => void seen.set(headers as object, { error }));
  const middleware = webhooks.middleware({ path: values.path });

  const server = http.createServer((req, res) => {
    res.on('finish', () => io.out(describeDelivery(req.method, req.url, res.statusCode, seen.get(req.headers))));
    middleware(req, res, () => {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`Not found: deliveries go to POST ${values.path}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, values.host, resolve)).catch((error: NodeJS.ErrnoException) => {
    // A port in use, an address not this machine's: the user's to change, in one line.
    throw new CommandError(`cannot listen on ${sanitizeText(values.host, 100)}:${port} (${error.code ?? sanitizeText(error.message, 200)})`);
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  io.out(`Listening on http://${host}:${address.port}${values.path} (Ctrl-C to stop)`);
  await new Promise<void>((resolve) => {
    const stop = () => server.close(() => resolve());
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    // Its reader has gone: found at the first line written after that, as with SIGPIPE.
    if (io.outputClosed?.aborted) stop();
    else io.outputClosed?.addEventListener('abort', stop, { once: true });
  });
  return EXIT.ok;
}

function describeDelivery(method: string | undefined, url: string | undefined, status: number, seen: Seen | undefined): string {
  const time = new Date().toISOString().slice(11, 19);
  if (seen?.event !== undefined) return `${time}  ${status} accepted  ${describeEvent(seen.event)}`;
  if (seen?.error !== undefined) return `${time}  ${status} refused   ${seen.error.code}: ${seen.error.message}`;
  if (status === 200) return `${time}  200 duplicate (already handled; not shown again)`;
  // Node's parser lets no control character through, but not a path of any length.
  return `${time}  ${status} ${sanitizeText(method ?? '?', 20)} ${sanitizeText(url ?? '', 200)}`;
}

/** A verified event in one line; signed or not, its text is the sender's, so none of it reaches the terminal raw. */
function describeEvent(event: MitpoEvent | UnknownMitpoEvent): string {
  const data = event.data as Record<string, unknown>;
  const fields = ['dispatch_id', 'connection_id', 'channel', 'status', 'provider_resource_id']
    .filter((key) => typeof data[key] === 'string' || typeof data[key] === 'number')
    .map((key) => `${key}=${sanitizeText(String(data[key]), 200)}`);
  return `${sanitizeText(event.event, 64)} at ${sanitizeText(event.timestamp, 40)}${fields.length > 0 ? `  ${fields.join(' ')}` : ''}`;
}

