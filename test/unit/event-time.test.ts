import fc from 'fast-check';
import { eventTimeMs } from '../../src/events/event-time';

const pad = (n: number, width: number) => String(n).padStart(width, '0');

describe('eventTimeMs (the body timestamp, read for the maxEventAge check)', () => {
  it('reads every UTC timestamp exactly as Date.parse does, fraction of any length included', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 9999 }),
        fc.integer({ min: 0, max: 13 }),
        fc.integer({ min: 0, max: 32 }),
        fc.integer({ min: 0, max: 24 }),
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 0, max: 60 }),
        fc.option(fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 9 })),
        (year, month, day, hour, minute, second, fraction) => {
          const text = `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(hour, 2)}:${pad(minute, 2)}:${pad(second, 2)}${fraction === null ? '' : `.${fraction}`}Z`;
          expect(eventTimeMs(text)).toStrictEqual(Date.parse(text));
        },
      ),
      { seed: 20_261_127, numRuns: 2000 },
    );
  });

  it.each([
    '2026-03-22T10:30:00Z',
    '2024-02-29T23:59:59.999Z',
    '2026-02-29T00:00:00Z',
    '2100-02-29T00:00:00Z',
    '2000-02-29T00:00:00Z',
    '2026-04-31T00:00:00Z',
    '2026-03-22T10:30:00+02:00',
    '2026-03-22T10:30:00.5-05:30',
    '0099-01-01T00:00:00Z',
    '2026-03-22T10:30:00.Z',
    '2026-03-22 10:30:00Z',
    '2026-03-22T10:30:0xZ',
    'not a time at all, but 20+ chars Z',
  ])('agrees with Date.parse on %s', (text) => {
    expect(eventTimeMs(text)).toStrictEqual(Date.parse(text));
  });
});
