import { shownValue } from './option-keys';

/** How a duration option is read: its name for messages, its default, and the range a sane value falls in. */
export interface DurationRule {
  /** The option's name as users write it, e.g. `'tolerance'` or `'mitpo-webhooks/redis: commandTimeout'`. */
  name: string;
  /** Seconds when the option is not given; `undefined` for an option that is off by default. */
  fallback: number | undefined;
  /** Largest sensible value in seconds: anything above is almost surely milliseconds. */
  max: number;
  /** Whether 0 is meaningful (it switches something off). */
  allowZero?: boolean | undefined;
}

/**
 * Every duration option, of `MitpoWebhooks` and of the stores, is in seconds
 * (fractions allowed), like MITPO's timestamps. One reader for all of them, so
 * each says the unit the same way and a value that can only be a slip of units
 * (e.g. `tolerance: 300000`) is a `TypeError` at start-up instead of a receiver
 * that accepts everything or refuses everything.
 *
 * @throws TypeError naming the option and the unit
 */
export function readSeconds(value: unknown, rule: DurationRule): number | undefined {
  if (value === undefined) return rule.fallback;
  const prefix = rule.name.includes(':') ? '' : 'mitpo-webhooks: ';
  const lowest = rule.allowZero === true ? 'zero or more' : 'a positive number of';
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (value === 0 && rule.allowZero !== true)) {
    throw new TypeError(`${prefix}${rule.name} must be ${lowest} seconds (got ${shownValue(value)})`);
  }
  if (value > rule.max) {
    throw new TypeError(
      `${prefix}${rule.name} is ${value} seconds, more than the ${rule.max} s it can sensibly be: ` +
        'durations are in seconds, not milliseconds',
    );
  }
  return value;
}
