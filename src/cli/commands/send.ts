import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { readLimitedBody, type LimitedBody } from '../../api/read-limited-body';
import { sanitizeText } from '../../text/sanitize-text';
import { signedDelivery } from '../../testing/signed-delivery';
import { CommandError, EXIT, hasUnprintableCharacters, UNPRINTABLE_CHARACTERS, UsageError, type CliIo, unexpectedArgument, withoutUserInfo } from '../cli-io';
import { secretFrom } from '../secret-option';

/** The most of an answer's body `send` prints; a receiver's answer is a few dozen bytes. */
const ANSWER_PRINT_LIMIT = 4096;
/** Enough bytes for ANSWER_PRINT_LIMIT characters even when each takes four UTF-8 bytes. */
const ANSWER_READ_LIMIT = ANSWER_PRINT_LIMIT * 4;

export const SEND_USAGE = `Usage: mitpo-webhooks send <url> --event <type> [--data <json> | --file <path>] [--secret <s>]

Signs one delivery exactly as MITPO would and POSTs it to <url>, then prints the
answer's status and, on the next line, its body as received (control characters
removed; cut after ${ANSWER_PRINT_LIMIT} characters). Redirects are not followed.

Options:
  --event <type>   the event type, e.g. dispatch.completed (any name, to try unknown types)
  --data <json>    the event's data object (default: a sample for the event type,
                   with fresh ids on every run, so it is never a duplicate)
  --file <path>    read the data object from a JSON file instead
  --secret <s>     the signing secret (default: $MITPO_WEBHOOK_SECRET)
  -h, --help       this help

Exits 0 on a 2xx answer, 1 on any other answer (a 3xx included) or none, 2 on bad arguments.`;

/** `mitpo-webhooks send`: one signed delivery POSTed, the answer printed. */
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
  if (extra.length > 0) throw unexpectedArgument(extra[0]);
  if (!/^https?:\/\//.test(url)) throw new UsageError(`the URL must start with http:// or https:// (got ${JSON.stringify(url)})`);
  if (!URL.canParse(url)) throw new UsageError(`${JSON.stringify(url)} is not a URL`);
  if (values.event === undefined || values.event === '') throw new UsageError('send needs --event <type>, e.g. --event dispatch.completed');
  // It becomes the X-MITPO-Event header, which cannot carry control characters, and is echoed.
  if (hasUnprintableCharacters(values.event)) throw new UsageError(`--event contains ${UNPRINTABLE_CHARACTERS}`);
  if (/[\u0100-\u{10ffff}]/u.test(values.event)) throw new UsageError('--event cannot be sent as the X-MITPO-Event header: it has a character above U+00FF');
  if (values.data !== undefined && values.file !== undefined) throw new UsageError('pass --data or --file, not both');
  const secret = secretFrom(values.secret, io.env);
  const data = dataFrom(values.data, values.file);

  const delivery = signedDelivery({ event: values.event, secret, ...(data === undefined ? {} : { data }) });
  io.out(`→ POST ${withoutUserInfo(url)} (${values.event}, ${Buffer.byteLength(delivery.body)} bytes)`);
  let response: Response;
  // One deadline for the answer and its body: a receiver that trickles times out too.
  const signal = AbortSignal.timeout(30_000);
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: delivery.headers,
      body: delivery.body,
      // MITPO posts to the URL it was given; following a redirect would also carry
      // a signed delivery to wherever the receiver points. The 3xx is the answer.
      redirect: 'manual',
      signal,
    });
  } catch (error) {
    throw new CommandError(withoutUserInfo(`no answer from ${url} (${describeFetchError(error)})`));
  }
  let answer: LimitedBody;
  try {
    answer = await readLimitedBody(response, ANSWER_READ_LIMIT);
  } catch (error) {
    throw new CommandError(`${url} answered ${response.status} but its body could not be read (${describeFetchError(error)})`);
  }
  io.out(`← ${response.status}${response.statusText ? ` ${sanitizeText(response.statusText, 100)}` : ''}`);
  io.out(describeBody(answer));
  return response.ok ? EXIT.ok : EXIT.failed;
}

/**
 * The answer's body as received, for the terminal: the receiver's text, so control
 * characters (escape sequences could repaint the screen) are removed, and a huge
 * answer is cut.
 */
function describeBody(answer: LimitedBody): string {
  if (answer.complete && answer.text === '') return '(empty body)';
  const shown = sanitizeText(answer.text, ANSWER_PRINT_LIMIT);
  return answer.complete || shown.endsWith('…') ? shown : `${shown}…`;
}

function describeFetchError(error: unknown): string {
  if ((error as Error | null)?.name === 'TimeoutError') return 'timed out';
  const cause = (error as { cause?: { code?: string } } | null)?.cause?.code ?? (error as Error | null)?.message ?? String(error);
  return sanitizeText(cause, 200);
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
