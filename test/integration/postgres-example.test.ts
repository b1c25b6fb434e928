import { Pool } from 'pg';
import { createAppTables, createWebhooks, sendOutbox } from '../../examples/postgres-exactly-once';
import { signedDelivery } from '../../src/testing';
import { deliver } from '../helpers/deliver';
import { assertPostgresReachable, DATABASE_URL, describeWithPostgres, dropSchema, testSchema } from '../helpers/postgres';
import { waitFor } from '../helpers/redis';

describeWithPostgres('examples/postgres-exactly-once.ts')('examples/postgres-exactly-once.ts', () => {
  let pool: Pool;
  const schemas: string[] = [];
  beforeAll(async () => {
    await assertPostgresReachable();
    pool = new Pool({ connectionString: DATABASE_URL });
  });
  afterAll(async () => {
    for (const schema of schemas) await dropSchema(pool, schema);
    await pool.end();
  });

  it('applies the completion, skips the acceptance retried after it, and sends its email once through the outbox', async () => {
    const [schema, queueSchema] = [testSchema(), testSchema()];
    schemas.push(schema, queueSchema);
    await pool.query(`create schema "${schema}"`);
    await createAppTables(pool, schema);
    const skipped: string[] = [];
    const { webhooks, queue } = createWebhooks(pool, { schema, queueSchema, log: (line) => skipped.push(line) });
    await queue.migrate();
    const t = new Date(Date.now() - 10_000);
    const event = (name: 'dispatch.accepted' | 'dispatch.completed', at: Date) =>
      signedDelivery({ event: name, secret: 'whsec_postgres_example', timestamp: at, data: { dispatch_id: 'dsp_1', channel: 'email', status: name.split('.')[1]! } });
    const completed = event('dispatch.completed', t);
    for (const delivery of [completed, event('dispatch.accepted', new Date(t.getTime() - 5000)), completed]) await deliver(webhooks, delivery);
    // One run at a time, in the order they came: the completion is applied before the late acceptance is looked at.
    webhooks.startWorker({ concurrency: 1 });
    try {
      await waitFor(async () => Number((await pool.query(`select count(*) from "${queueSchema}".deliveries where state = 'done'`)).rows[0].count) === 2);
      expect((await pool.query(`select status from "${schema}".dispatches where id = 'dsp_1'`)).rows).toEqual([{ status: 'completed' }]);
      const sent: unknown[] = [];
      expect(await sendOutbox(pool, async (payload) => void sent.push(payload), schema)).toBe(1);
      expect(await sendOutbox(pool, async (payload) => void sent.push(payload), schema)).toBe(0);
      expect(sent).toEqual([{ to: 'ops@example.com', dispatch: 'dsp_1' }]);
      expect(skipped).toEqual([expect.stringContaining('skipped stale dispatch.accepted')]);
    } finally {
      await webhooks.close({ timeout: 2 });
    }
  });
});
