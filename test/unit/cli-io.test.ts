import { storedTime } from '../../src/cli/cli-io';

describe('storedTime, for a time read from a queue’s storage', () => {
  it('prints a number of milliseconds, as BullMQ keeps it, and digits, as node-postgres gives a bigint', () => {
    expect(storedTime(1_765_000_000_000)).toBe('2025-12-06T05:46:40.000Z');
    expect(storedTime('1765000000000')).toBe('2025-12-06T05:46:40.000Z');
  });

  it.each([[''], [' '], ['0x10'], ['2025-12-06T05:46:40Z'], [1e20], [Number.NaN], [null], [undefined], [{}]])('prints %j as no time (null)', (value) => {
    expect(storedTime(value)).toBeNull();
  });
});
