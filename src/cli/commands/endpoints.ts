import { randomBytes } from 'node:crypto';
import { closeSync, constants, type Stats, fchmodSync, fstatSync, fsyncSync, lstatSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { MitpoApiError } from '../../api/mitpo-api-error';
import { isApiKey, WebhookEndpointsClient } from '../../api/webhook-endpoints-client';
import { isMitpoEventName, MITPO_EVENT_NAMES, type MitpoEventName } from '../../events/schemas';
import { secretProblem } from '../../secrets/secret-rules';
import { sanitizeText } from '../../text/sanitize-text';
import { CommandError, EXIT, hasUnprintableCharacters, UNPRINTABLE_CHARACTERS, UsageError, type CliIo, unexpectedArgument } from '../cli-io';

export const ENDPOINTS_USAGE = `Usage:
  mitpo-webhooks endpoints create --url <https-url> --events <a,b> [--write-env <file>]
  mitpo-webhooks endpoints list
  mitpo-webhooks endpoints delete <id>

Registers, lists and deletes the endpoints MITPO delivers webhooks to, through
MITPO's /v1/webhooks API. Needs MITPO_API_KEY (sent as the Bearer token, never
printed); MITPO_API_BASE_URL overrides https://api.mitpo.io.

create prints the endpoint's signing secret: MITPO shows it this once.
  --url <https-url>     where MITPO delivers
  --events <a,b>        event types, comma-separated: ${MITPO_EVENT_NAMES.join(', ')}
  --write-env <file>    also set MITPO_WEBHOOK_SECRET=... in this env file, other lines kept;
                        the file is left readable by its owner only (0600), also when it
                        existed; a symbolic link is refused, never written through

Exits 0 on success, 1 when the API call fails, 2 on bad arguments.`;

/** `mitpo-webhooks endpoints create|list|delete`: MITPO's /v1/webhooks API from the terminal. */
export async function endpoints(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      events: { type: 'string' },
      'write-env': { type: 'string' },
    },
  });
  const [action, ...rest] = positionals;
  // An option create alone reads, given to list or delete, would be dropped without a word
  // (`list --write-env .env` writes nothing); say so before any request is made.
  if (action === 'list' || action === 'delete') {
    const createOnly = (['url', 'events', 'write-env'] as const).find((name) => values[name] !== undefined);
    if (createOnly !== undefined) throw new UsageError(`--${createOnly} goes with create, not ${action}`);
  }
  const apiClient = () => client(io.env);
  try {
    switch (action) {
      case 'create': {
        if (rest.length > 0) throw unexpectedArgument(rest[0]);
        if (values.url === undefined) throw new UsageError('create needs --url <https-url>');
        if (values.events === undefined) throw new UsageError('create needs --events, e.g. --events dispatch.completed,dispatch.failed');
        const events = values.events.split(',').map((e) => e.trim()).filter((e) => e !== '');
        const unknown = events.filter((e) => !isMitpoEventName(e));
        if (unknown.length > 0) throw new UsageError(`unknown event type ${JSON.stringify(unknown[0])}; known types are ${MITPO_EVENT_NAMES.join(', ')}`);
        if (!values.url.startsWith('https://')) throw new UsageError('--url must be an https:// URL: MITPO delivers webhooks over HTTPS only');
        const envFile = values['write-env'];
        // Before the endpoint exists: a path that will be refused must not cost a secret
        // MITPO shows only once. writeEnvFile checks again, as the path may change meanwhile.
        if (envFile !== undefined) {
          const problem = envFileProblem(envFile);
          if (problem !== undefined) throw new UsageError(problem);
        }
        const created = await apiClient().create({ url: values.url, events: events as MitpoEventName[] });
        io.out(`Created endpoint ${shown(created.id)} for ${shown(created.url)}`);
        io.out(`Events: ${created.events.map(shown).join(', ')}`);
        io.out(`Signing secret (MITPO shows it only now): ${escapeUnprintable(created.signing_secret)}`);
        if (envFile !== undefined) {
          writeEnvFile(envFile, 'MITPO_WEBHOOK_SECRET', created.signing_secret);
          io.out(`Wrote MITPO_WEBHOOK_SECRET to ${envFile}`);
        }
        return EXIT.ok;
      }
      case 'list': {
        if (rest.length > 0) throw unexpectedArgument(rest[0]);
        const list = await apiClient().list();
        if (list.length === 0) {
          io.out('No webhook endpoints registered.');
          return EXIT.ok;
        }
        for (const endpoint of list) {
          io.out(`${shown(endpoint.id)}  ${shown(endpoint.url)}  [${endpoint.events.map(shown).join(', ')}]  created ${shown(endpoint.created_at)}`);
        }
        return EXIT.ok;
      }
      case 'delete': {
        const [id, ...extra] = rest;
        if (id === undefined) throw new UsageError('delete needs the endpoint id, e.g. endpoints delete whk_r3s4t5u6');
        if (extra.length > 0) throw unexpectedArgument(extra[0]);
        const deleted = await apiClient().delete(id);
        io.out(`Deleted endpoint ${shown(deleted.id)}`);
        return EXIT.ok;
      }
      case undefined:
        throw new UsageError('endpoints needs an action: create, list or delete');
      default:
        throw new UsageError(`unknown endpoints action ${JSON.stringify(action)}; use create, list or delete`);
    }
  } catch (error) {
    // The request id is what MITPO's support asks for (already cleaned of control characters).
    if (error instanceof MitpoApiError) throw new CommandError(`${error.message}${error.requestId === undefined ? '' : ` (MITPO request id ${error.requestId})`}`);
    if (error instanceof TypeError && error.message.startsWith('mitpo-webhooks: ')) {
      throw new UsageError(error.message.slice('mitpo-webhooks: '.length));
    }
    throw error;
  }
}

function client(env: NodeJS.ProcessEnv): WebhookEndpointsClient {
  const apiKey = env.MITPO_API_KEY;
  if (apiKey === undefined || apiKey === '') throw new UsageError('MITPO_API_KEY is not set: export your MITPO API key (mk_live_...) first');
  if (!isApiKey(apiKey)) {
    throw new UsageError('MITPO_API_KEY holds white space or a character no API key has (a line break pasted into it?); set it to the key alone');
  }
  return new WebhookEndpointsClient({ apiKey, ...(env.MITPO_API_BASE_URL ? { baseUrl: env.MITPO_API_BASE_URL } : {}) });
}

/** Text from MITPO's API, for the terminal: control characters (escape sequences) removed. */
function shown(text: string): string {
  return sanitizeText(text, 2000);
}

/**
 * The signing secret, printed whole since MITPO shows it only once; a character
 * in it that cannot be printed as it is (which no real secret has) is shown as a
 * `\u{…}` escape of its code point rather than sent to the terminal, so the value
 * can still be recovered (a character past U+FFFF, such as a variation selector, whole).
 */
function escapeUnprintable(text: string): string {
  return Array.from(text, (c) => (hasUnprintableCharacters(c) ? `\\u{${c.codePointAt(0)!.toString(16)}}` : c)).join('');
}

// Not in Node's constants on Windows, which has no symbolic-link following to turn off
// at open; the lstat checks still apply there.
const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;

/** Why an env file path must not be written, or undefined when it may (a missing file in a directory that exists is fine). */
function envFileProblem(file: string): string | undefined {
  if (file === '') return '--write-env needs the path of a file';
  let stats: Stats;
  try {
    stats = lstatSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      const dir = path.dirname(file);
      return statSync(dir, { throwIfNoEntry: false })?.isDirectory() ? undefined : `cannot use --write-env ${file}: its directory ${dir} does not exist`;
    }
    return `cannot use --write-env ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
  }
  if (stats.isSymbolicLink()) return `refusing --write-env ${file}: it is a symbolic link, never written through; pass the path of the file itself`;
  if (!stats.isFile()) return `refusing --write-env ${file}: it is not a regular file`;
  return undefined;
}

/**
 * Sets NAME=value in an env file, keeping its other lines. The new content goes to a
 * fresh 0600 file in the same directory that then replaces the path with one rename:
 * the result is 0600 whatever the old file's mode was, a reader never sees half a
 * file, and a symbolic link put at the path is replaced rather than written through.
 */
function writeEnvFile(file: string, name: string, value: string): void {
  // A newline in the value would add a line of its own to the file (another variable).
  if (hasUnprintableCharacters(value)) {
    throw new CommandError(`the signing secret MITPO returned contains ${UNPRINTABLE_CHARACTERS}: not written to ${file}`);
  }
  const problem = secretProblem(value);
  if (problem !== undefined) throw new CommandError(`the signing secret MITPO returned ${problem}: not written to ${file}`);

  // Latin-1 both ways keeps every other line byte for byte, whatever its encoding.
  const text = readEnvFile(file) ?? '';
  // A file written on Windows keeps its CRLF line ends.
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines.at(-1) === '') lines.pop();
  const line = Buffer.from(`${name}=${envValue(value, file)}`, 'utf8').toString('latin1');
  // Any form a reader takes (`export NAME=`, spaces around `=`): the first is replaced and
  // any later one dropped, since a reader takes the last, and an old secret there would win.
  const assignment = new RegExp(`^\\s*(export\\s+)?${name}\\s*=`);
  const kept: string[] = [];
  let written = false;
  for (const l of lines) {
    if (!assignment.test(l)) kept.push(l);
    else if (!written) {
      kept.push(line);
      written = true;
    }
  }
  if (!written) kept.push(line);
  replaceFile(file, Buffer.from(`${kept.join(eol)}${eol}`, 'latin1'));
}

/**
 * The value as env file readers (Node's --env-file, dotenv) give it back: bare when
 * it holds nothing they would read otherwise, else in single quotes, which they
 * take literally. `#` starts a comment in a bare value.
 */
function envValue(value: string, file: string): string {
  if (/^[\w+/=.:@-]+$/.test(value)) return value;
  if (!value.includes("'")) return `'${value}'`;
  throw new CommandError(`the signing secret MITPO returned holds both characters an env file cannot take bare and a single quote: not written to ${file}`);
}

/** The env file's text, or undefined when there is none; never read through a symbolic link. */
function readEnvFile(file: string): string | undefined {
  const problem = envFileProblem(file);
  if (problem !== undefined) throw new CommandError(problem);
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    // ELOOP: the path became a symbolic link after the check above.
    if (code === 'ELOOP') throw new CommandError(`refusing --write-env ${file}: it is a symbolic link, never written through`);
    throw new CommandError(`cannot read --write-env ${file}: ${code ?? (error as Error).message}`);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new CommandError(`refusing --write-env ${file}: it is not a regular file`);
    return readFileSync(fd, 'latin1');
  } finally {
    closeSync(fd);
  }
}

function replaceFile(file: string, content: Buffer): void {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number;
  try {
    // O_EXCL: a new file, never one (or a link) already at the temporary name.
    fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW, 0o600);
  } catch (error) {
    throw new CommandError(`cannot write --write-env ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    try {
      // openSync's mode passes through the umask; fchmod makes it exactly 0600.
      fchmodSync(fd, 0o600);
      writeFileSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, file);
  } catch (error) {
    try {
      unlinkSync(temp);
    } catch {
      // already gone: nothing to clean up
    }
    throw new CommandError(`cannot write --write-env ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}
