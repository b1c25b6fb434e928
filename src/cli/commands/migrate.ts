import { parseArgs } from 'node:util';
import { PostgresDeliveryQueue } from '../../postgres/postgres-delivery-queue';
import { sanitizeText } from '../../text/sanitize-text';
import { EXIT, UsageError, type CliIo, unexpectedArgument } from '../cli-io';
import { openPool, postgres } from './postgres-deliveries';

export const MIGRATE_USAGE = `Usage: mitpo-webhooks migrate --postgres <url> [--schema mitpo_webhooks]

Creates the Postgres queue's schema and tables (PostgresDeliveryQueue from
mitpo-webhooks/postgres) if they are missing; running it again changes nothing.
Needs the pg package.

Options:
  --postgres <url>   the database (default: $DATABASE_URL)
  --schema <name>    the queue's schema (default mitpo_webhooks)
  -h, --help         this help

Exits 0 once the tables are there, 1 when Postgres cannot be reached or refuses, 2 on bad arguments.`;

export async function migrate(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { postgres: { type: 'string' }, schema: { type: 'string', default: 'mitpo_webhooks' } },
  });
  if (positionals.length > 0) throw unexpectedArgument(positionals[0]);
  const url = values.postgres ?? io.env.DATABASE_URL;
  if (url === undefined || url === '') throw new UsageError('no Postgres: pass --postgres postgres://host/db or set DATABASE_URL');
  const pool = openPool(url);
  try {
    let queue: PostgresDeliveryQueue;
    try {
      queue = new PostgresDeliveryQueue({ pool, schema: values.schema });
    } catch (error) {
      throw new UsageError((error as Error).message.replace('mitpo-webhooks/postgres: ', '--'));
    }
    await postgres(queue.migrate());
    io.out(`the Postgres queue's tables are in schema ${sanitizeText(values.schema, 64)}`);
    return EXIT.ok;
  } finally {
    await pool.end().catch(() => undefined);
  }
}
