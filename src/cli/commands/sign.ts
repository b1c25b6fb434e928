import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { sign as signBody } from '../../signature/sign';
import { CommandError, EXIT, UsageError, type CliIo } from '../cli-io';
import { secretFrom } from '../secret-option';

export const SIGN_USAGE = `Usage: mitpo-webhooks sign [--file <path>] [--secret <s>] [--sent-at <unix seconds>]

Prints the X-MITPO-Signature, X-MITPO-Timestamp and X-MITPO-Event headers MITPO
would send with a whole delivery body, read from --file or standard input. The
body is signed byte for byte as given; the event comes from its "event" field.

Options:
  --file <path>         the body (default: standard input)
  --secret <s>          the signing secret (default: $MITPO_WEBHOOK_SECRET)
  --sent-at <seconds>   the X-MITPO-Timestamp value (default: now)
  -h, --help            this help

Exits 0 on success, 1 when the body is not a MITPO event, 2 on bad arguments.`;

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
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const secret = secretFrom(values.secret, io.env);
  const sentAt = values['sent-at'] ?? String(Math.floor(Date.now() / 1000));
  if (!/^[0-9]{1,12}$/.test(sentAt)) throw new UsageError('--sent-at must be whole unix seconds');

  const body = values.file === undefined ? await readStdin(io) : readBodyFile(values.file);
  let event: unknown;
  try {
    event = (JSON.parse(body.toString('utf8')) as { event?: unknown } | null)?.event;
  } catch {
    throw new CommandError('the body is not valid JSON');
  }
  if (typeof event !== 'string' || event === '') throw new CommandError('the body has no "event" field naming the event type');

  io.out(`X-MITPO-Signature: ${signBody(body, secret)}`);
  io.out(`X-MITPO-Timestamp: ${sentAt}`);
  io.out(`X-MITPO-Event: ${event}`);
  return EXIT.ok;
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
