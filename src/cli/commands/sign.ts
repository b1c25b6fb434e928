import { isUtf8 } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseAnyEvent } from '../../events/parse-event';
import { sign as signBody } from '../../signature/sign';
import { sanitizeText } from '../../text/sanitize-text';
import { CommandError, EXIT, hasUnprintableCharacters, UNPRINTABLE_CHARACTERS, UsageError, type CliIo, unexpectedArgument } from '../cli-io';
import { secretFrom } from '../secret-option';

export const SIGN_USAGE = `Usage: mitpo-webhooks sign [--file <path>] [--secret <s>] [--sent-at <unix seconds>]

Prints the headers MITPO would send with a whole delivery body, read from --file
or standard input, as "Name: value" lines: Content-Type: application/json,
X-MITPO-Signature, X-MITPO-Timestamp and X-MITPO-Event. The body is signed byte
for byte as given; the event comes from its "event" field. The body must be a
MITPO event: UTF-8 JSON with "event", an ISO 8601 "timestamp" and a "data"
object (and the fields its type requires, for the types MITPO documents).

Options:
  --file <path>         the body (default: standard input)
  --secret <s>          the signing secret (default: $MITPO_WEBHOOK_SECRET)
  --sent-at <seconds>   the X-MITPO-Timestamp value (default: now)
  -h, --help            this help

Exits 0 on success, 1 when the body is not a MITPO event, 2 on bad arguments.`;

/** `mitpo-webhooks sign`: the headers for a body, refused unless the body is a MITPO event. */
export async function sign(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      file: { type: 'string' },
      secret: { type: 'string' },
      'sent-at': { type: 'string' },
    },
  });
  if (positionals.length > 0) throw unexpectedArgument(positionals[0]);
  const secret = secretFrom(values.secret, io.env);
  const sentAt = values['sent-at'] ?? String(Math.floor(Date.now() / 1000));
  if (!/^[0-9]{1,12}$/.test(sentAt)) throw new UsageError('--sent-at must be whole unix seconds');

  const body = values.file === undefined ? await readStdin(io) : readBodyFile(values.file);
  const event = eventNameOf(body);

  // Content-Type first, in the order MITPO (and signedDelivery) send them.
  io.out('Content-Type: application/json');
  io.out(`X-MITPO-Signature: ${signBody(body, secret)}`);
  io.out(`X-MITPO-Timestamp: ${sentAt}`);
  io.out(`X-MITPO-Event: ${event}`);
  return EXIT.ok;
}

/**
 * The body's event name, once the body is known to be what a receiver accepts as
 * a MITPO event: headers for anything else would only sign a delivery every
 * receiver refuses (invalid_json or invalid_payload), so it is refused here.
 */
function eventNameOf(body: Buffer): string {
  // A receiver refuses a body that is not UTF-8; decoding it anyway would sign
  // bytes other than the ones checked.
  if (!isUtf8(body)) throw new CommandError('the body is not a MITPO event: it is not UTF-8');
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new CommandError('the body is not a MITPO event: it is not valid JSON');
  }
  let name: string;
  try {
    name = parseAnyEvent(value).event;
  } catch (error) {
    // The message quotes the body's event name: the sender's text, cleaned for the terminal.
    throw new CommandError(`the body is not a MITPO event: ${sanitizeText((error as Error).message, 300)}`);
  }
  // The name becomes a header line: a control character (a newline above all) would
  // break it, and no HTTP header could carry it to a receiver anyway.
  if (hasUnprintableCharacters(name)) throw new CommandError(`the body is not a MITPO event: its "event" contains ${UNPRINTABLE_CHARACTERS}`);
  // Sent as UTF-8 (curl), read back as Latin-1 (Node): it would never match the body's event.
  if (/[^\x20-\x7e]/.test(name)) {
    throw new CommandError('the body is not a MITPO event: its "event" has characters outside ASCII, which the X-MITPO-Event header cannot carry as sent');
  }
  return name;
}

function readBodyFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new UsageError(`cannot read --file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

async function readStdin(io: CliIo): Promise<Buffer> {
  if (io.stdin.isTTY) throw new UsageError('no body: pipe one in (mitpo-webhooks sign < body.json) or pass --file');
  const chunks: Buffer[] = [];
  for await (const chunk of io.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks);
}
