import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { MitpoApiError } from '../../api/mitpo-api-error';
import { WebhookEndpointsClient } from '../../api/webhook-endpoints-client';
import { MITPO_EVENT_NAMES } from '../../events/schemas';
import { CommandError, EXIT, UsageError, type CliIo } from '../cli-io';

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
  --write-env <file>    also write MITPO_WEBHOOK_SECRET=... to this env file (created 0600, other lines kept)

Exits 0 on success, 1 when the API call fails, 2 on bad arguments.`;

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
  const apiClient = () => client(io.env);
  try {
    switch (action) {
      case 'create': {
        if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
        if (values.url === undefined) throw new UsageError('create needs --url <https-url>');
        if (values.events === undefined) throw new UsageError('create needs --events, e.g. --events dispatch.completed,dispatch.failed');
        const events = values.events.split(',').map((e) => e.trim()).filter((e) => e !== '');
        const unknown = events.filter((e) => !(MITPO_EVENT_NAMES as string[]).includes(e));
        if (unknown.length > 0) throw new UsageError(`unknown event type ${JSON.stringify(unknown[0])}; known types are ${MITPO_EVENT_NAMES.join(', ')}`);
        if (!values.url.startsWith('https://')) throw new UsageError('--url must be an https:// URL: MITPO delivers webhooks over HTTPS only');
        const created = await apiClient().create({ url: values.url, events: events as typeof MITPO_EVENT_NAMES });
        io.out(`Created endpoint ${created.id} for ${created.url}`);
        io.out(`Events: ${created.events.join(', ')}`);
        io.out(`Signing secret (MITPO shows it only now): ${created.signing_secret}`);
        if (values['write-env'] !== undefined) {
          writeEnvFile(values['write-env'], 'MITPO_WEBHOOK_SECRET', created.signing_secret);
          io.out(`Wrote MITPO_WEBHOOK_SECRET to ${values['write-env']}`);
        }
        return EXIT.ok;
      }
      case 'list': {
        if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
        const list = await apiClient().list();
        if (list.length === 0) {
          io.out('No webhook endpoints registered.');
          return EXIT.ok;
        }
        for (const endpoint of list) {
          io.out(`${endpoint.id}  ${endpoint.url}  [${endpoint.events.join(', ')}]  created ${endpoint.created_at}`);
        }
        return EXIT.ok;
      }
      case 'delete': {
        const [id, ...extra] = rest;
        if (id === undefined) throw new UsageError('delete needs the endpoint id, e.g. endpoints delete whk_r3s4t5u6');
        if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
        const deleted = await apiClient().delete(id);
        io.out(`Deleted endpoint ${deleted.id}`);
        return EXIT.ok;
      }
      case undefined:
        throw new UsageError('endpoints needs an action: create, list or delete');
      default:
        throw new UsageError(`unknown endpoints action ${JSON.stringify(action)}; use create, list or delete`);
    }
  } catch (error) {
    if (error instanceof MitpoApiError) throw new CommandError(error.message);
    if (error instanceof TypeError && error.message.startsWith('mitpo-webhooks: ')) {
      throw new UsageError(error.message.slice('mitpo-webhooks: '.length));
    }
    throw error;
  }
}

function client(env: NodeJS.ProcessEnv): WebhookEndpointsClient {
  const apiKey = env.MITPO_API_KEY;
  if (apiKey === undefined || apiKey === '') throw new UsageError('MITPO_API_KEY is not set: export your MITPO API key (mk_live_...) first');
  return new WebhookEndpointsClient({ apiKey, ...(env.MITPO_API_BASE_URL ? { baseUrl: env.MITPO_API_BASE_URL } : {}) });
}

/** Sets NAME=value in an env file, keeping its other lines; a new file is readable by its owner only. */
function writeEnvFile(path: string, name: string, value: string): void {
  const existed = existsSync(path);
  const text = existed ? readFileSync(path, 'utf8').replace(/\n+$/, '') : '';
  const lines = text === '' ? [] : text.split('\n');
  const line = `${name}=${value}`;
  const index = lines.findIndex((l) => l.startsWith(`${name}=`));
  if (index >= 0) lines[index] = line;
  else lines.push(line);
  writeFileSync(path, `${lines.join('\n')}\n`, { mode: 0o600 });
  if (!existed) chmodSync(path, 0o600);
}
