import { FailureReport } from '../../src/pipeline/failure-report';

// A worker whose store is down fails at every poll: each failure is reported, and the log gets one record a minute.
it("logs a worker's trouble once a minute at most, with how many more there were", () => {
  const records: Array<{ record: Record<string, unknown>; message: string }> = [];
  const logger = { debug() {}, info() {}, warn() {}, error: (record: Record<string, unknown>, message: string) => void records.push({ record, message }) };
  let now = 1_000_000;
  const report = new FailureReport(logger, () => now);
  report.workerTrouble(new Error('connect ECONNREFUSED 127.0.0.1:5432'));
  now += 1000;
  report.workerTrouble(new Error('connect ECONNREFUSED 127.0.0.1:5432'));
  now += 58_999;
  report.workerTrouble(new Error('connect ECONNREFUSED 127.0.0.1:5432'));
  expect(records).toHaveLength(1);
  expect(records[0]!.record).not.toHaveProperty('repeated');
  now += 1;
  report.workerTrouble(new Error('the pool is closed'));
  expect(records).toHaveLength(2);
  expect(records[1]).toEqual({
    record: { code: 'queue_unavailable', err: new Error('the pool is closed'), repeated: 2 },
    message: "mitpo-webhooks: the queue's worker could not take or settle deliveries; it tries again",
  });
});
