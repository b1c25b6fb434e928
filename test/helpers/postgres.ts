import { randomUUID } from 'node:crypto';
import { Pool } from 'pg';

/** Set by .ci/run; without it the Postgres tests are skipped, and say so. */
export const DATABASE_URL = process.env.DATABASE_URL;

export function describeWithPostgres(title: string): jest.Describe {
  if (DATABASE_URL === undefined || DATABASE_URL === '') {
    console.log(`SKIPPED ${title}: set DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it against a real PostgreSQL; .ci/run does.`);
    return describe.skip;
  }
  return describe;
}

/** Fails the suite, not skips it, when DATABASE_URL is set but Postgres does not answer. */
export async function assertPostgresReachable(): Promise<void> {
  const pool = new Pool({ connectionString: DATABASE_URL, connectionTimeoutMillis: 3000 });
  try {
    await pool.query('select 1');
  } catch (error) {
    throw new Error(`DATABASE_URL is set (${DATABASE_URL}) but PostgreSQL does not answer there: ${(error as Error).message}`, { cause: error });
  } finally {
    await pool.end();
  }
}

/** A schema of a test's own, so tests never see each other's rows. */
export function testSchema(): string {
  return `mitpo_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
}

export async function dropSchema(pool: Pool, schema: string): Promise<void> {
  await pool.query(`drop schema if exists "${schema}" cascade`);
}

/** A pg query's text and values, whether it was passed as (text, values) or as one QueryConfig. */
export function statementOf(args: unknown[]): { text: string | undefined; values: unknown[] | undefined } {
  const [first, second] = args as [unknown, unknown];
  if (typeof first === 'string') return { text: first, values: second as unknown[] | undefined };
  const config = first as { text?: unknown; values?: unknown[] } | null;
  return { text: typeof config?.text === 'string' ? config.text : undefined, values: config?.values };
}

/**
 * Runs `intercept` in place of every query a client of `pool` sends (as (text, values), a
 * QueryConfig, or with pg-pool's callback); it sends one on, changed or not, through `query`.
 */
export function interceptQueries(pool: Pool, intercept: (args: unknown[], query: (...args: unknown[]) => Promise<unknown>) => unknown): void {
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
    (client as unknown as { query: unknown }).query = (...args: unknown[]) => intercept(args, query);
  });
}
