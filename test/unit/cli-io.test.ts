import { storeCall, storedTime } from '../../src/cli/cli-io';

describe('storedTime, for a time read from a queue’s storage', () => {
  it('prints a number of milliseconds, as BullMQ keeps it, and digits, as node-postgres gives a bigint', () => {
    expect(storedTime(1_765_000_000_000)).toBe('2025-12-06T05:46:40.000Z');
    expect(storedTime('1765000000000')).toBe('2025-12-06T05:46:40.000Z');
  });

  it.each([[''], [' '], ['0x10'], ['2025-12-06T05:46:40Z'], [1e20], [Number.NaN], [null], [undefined], [{}]])('prints %j as no time (null)', (value) => {
    expect(storedTime(value)).toBeNull();
  });
});

// Found by a hunt: a store that answered with a refusal (Postgres' "permission denied") was
// reported as one that "could not be reached", sending the operator to the network.
describe('storeCall, for a command against Redis or Postgres', () => {
  it('says the store refused a command it answered with an error, and could not be reached when it did not answer', async () => {
    const refused = Object.assign(new Error('permission denied for database test'), { code: '42501' });
    await expect(storeCall('Postgres', 1000, Promise.reject(refused))).rejects.toThrow('Postgres refused the command (42501 permission denied for database test)');
    const unreached = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    await expect(storeCall('Postgres', 1000, Promise.reject(unreached))).rejects.toThrow('Postgres could not be reached (connect ECONNREFUSED 127.0.0.1:1)');
    // (In review: Node's five-letter errno codes looked like a SQLSTATE.)
    const dropped = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
    await expect(storeCall('Postgres', 1000, Promise.reject(dropped))).rejects.toThrow('Postgres could not be reached (write EPIPE)');
    const replied = Object.assign(new Error('WRONGPASS invalid username-password pair'), { name: 'ReplyError' });
    await expect(storeCall('Redis', 1000, Promise.reject(replied))).rejects.toThrow('Redis refused the command (WRONGPASS invalid username-password pair)');
  });
});
