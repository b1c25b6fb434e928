import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { signedDelivery } from '../../testing/signed-delivery';
import { CommandError, EXIT, UsageError, type CliIo } from '../cli-io';
import { secretFrom } from '../secret-option';

export const SEND_USAGE = `Usage: mitpo-webhooks send <url> --event <type> [--data <json> | --file <path>] [--secret <s>]

Signs one delivery exactly as MITPO would and POSTs it to <url>, then prints the
status and the answer.

Options:
  --event <type>   the event type, e.g. dispatch.completed (any name, to try unknown types)
  --data <json>    the event's data object (default: a sample for the event type)
  --file <path>    read the data object from a JSON file instead
  --secret <s>     the signing secret (default: $MITPO_WEBHOOK_SECRET)
  -h, --help       this help

Exits 0 on a 2xx answer, 1 on any other answer or none, 2 on bad arguments.`;

export async function send(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      event: { type: 'string' },
      data: { type: 'string' },
      file: { type: 'string' },
      secret: { type: 'string' },
    },
  });
  const [url, ...extra] = positionals;
  if (url === undefined) throw new UsageError('send needs the receiver URL, e.g. http://127.0.0.1:3000/webhooks/mitpo');
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
  if (!/^https?:\/\//.test(url)) throw new UsageError(`the URL must start with http:// or https:// (got ${JSON.stringify(url)})`);
  if (values.event === undefined || values.event === '') throw new UsageError('send needs --event <type>, e.g. --event dispatch.completed');
  if (values.data !== undefined && values.file !== undefined) throw new UsageError('pass --data or --file, not both');
  const secret = secretFrom(values.secret, io.env);
  const data = dataFrom(values.data, values.file);

  const delivery = signedDelivery({ event: values.event, secret, ...(data === undefined ? {} : { data }) });
  io.out(`→ POST ${url} (${values.event}, ${Buffer.byteLength(delivery.body)} bytes)`);
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: delivery.headers,
      body: delivery.body,
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    throw new CommandError(`no answer from ${url} (${cause})`);
  }
  const text = await response.text();
  io.out(`← ${response.status} ${describeAnswer(text)}`);
  return response.ok ? EXIT.ok : EXIT.failed;
}

function dataFrom(json: string | undefined, file: string | undefined): Record<string, unknown> | undefined {
  if (json === undefined && file === undefined) return undefined;
  let text: string;
  if (file !== undefined) {
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read --file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  } else {
    text = json!;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UsageError(`${file === undefined ? '--data' : `--file ${file}`} is not valid JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new UsageError('the event data must be a JSON object, e.g. {"dispatch_id":"dsp_1","channel":"meta_ads","status":"completed"}');
  }
  return value as Record<string, unknown>;
}

/** MITPO's envelope in words when it is one; the raw text otherwise. */
export function describeAnswer(text: string): string {
  try {
    const body = JSON.parse(text) as { success?: unknown; duplicate?: unknown; error?: { code?: unknown; message?: unknown } };
    if (body.success === true) return body.duplicate === true ? 'duplicate (already handled; handlers not run again)' : 'accepted';
    if (body.error && typeof body.error.code === 'string') return `${body.error.code}: ${String(body.error.message ?? '')}`;
  } catch {
    // not JSON: shown as it is
  }
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}
