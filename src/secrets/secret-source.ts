import { WebhookVerificationError } from '../errors';
import { withTimeout } from '../with-timeout';
import { secretProblem } from './secret-rules';

/**
 * How long a call of the secret function may take. Deliveries share a pending
 * call, so one that never settled would hold every later delivery for ever.
 */
const SECRET_CALL_TIMEOUT_MS = 10_000;

/**
 * After this many failed calls in a row, the secret function is called at most
 * once per HELD_OFF_MS until a call succeeds: a failure is not cached, but a
 * secrets manager that keeps failing fast (throttled, down) must not be called
 * once per forged request.
 */
const FAILURES_BEFORE_HOLD_OFF = 2;
const HELD_OFF_MS = 1000;

/** One secret or several (during a rotation). */
export type Secrets = string | readonly string[];

/**
 * The signing secret: a string, several during a rotation, or a function
 * returning either (or a promise of either), e.g. to read a secrets manager.
 */
export type SecretOption = Secrets | (() => Secrets | PromiseLike<Secrets>);

/** The keys to verify deliveries with. */
export interface SigningKeys<Key = unknown> {
  /** The keys of a fixed secret, read without waiting; undefined when a function supplies them. */
  readonly fixed: readonly Key[] | undefined;
  /** The keys for one delivery. @throws WebhookVerificationError `secret_unavailable` */
  resolve(): Promise<readonly Key[]>;
}

/**
 * A fixed secret is checked and turned into keys once, here, so a bad one is a
 * `TypeError` at start-up. A function's result is checked each time it is
 * called, and reused for `cacheTtlMs`: the function runs only after a
 * delivery's headers passed, but forged traffic with well-formed headers must
 * still not become one secrets-manager call per request. Concurrent deliveries
 * share one pending call; a failure, or a call still pending after 10 s, is not
 * cached (a result that comes later is), though after two in a row the function
 * is called at most once a second, the deliveries between answered 503 at once.
 *
 * @throws TypeError for a fixed secret that is missing, empty, padded, quoted or only the prefix, or an empty list
 */
export function signingKeysOf<Key>(option: unknown, toKey: (secret: string) => Key, cacheTtlMs: number, now: () => number): SigningKeys<Key> {
  if (typeof option !== 'function') {
    const fixed = Object.freeze(checkedList(option, (message) => new TypeError(`mitpo-webhooks: ${message}`)).map(toKey));
    const resolved = Promise.resolve(fixed);
    return { fixed, resolve: () => resolved };
  }
  const fetchSecrets = option as () => unknown;
  let cached: { keys: readonly Key[]; until: number } | undefined;
  let pending: Promise<readonly Key[]> | undefined;
  // Calls made, and the one whose result is cached: a late result never replaces a newer one.
  let calls = 0;
  let cachedCall = 0;
  let failuresInARow = 0;
  let calledAt = 0;
  const resolve = (): Promise<readonly Key[]> => {
    if (cached !== undefined && now() < cached.until) return Promise.resolve(cached.keys);
    if (pending === undefined && failuresInARow >= FAILURES_BEFORE_HOLD_OFF && now() - calledAt < HELD_OFF_MS) {
      return Promise.reject(unavailable(`the secret function failed ${failuresInARow} times in a row; it is called again at most once a second`));
    }
    if (pending === undefined) {
      calledAt = now();
      const call = fetchAndCheck(fetchSecrets, toKey);
      const callNumber = (calls += 1);
      // Kept even when it comes after the timeout, so a secrets manager slower than that
      // still serves the deliveries that follow.
      call.then((keys) => {
        if (callNumber < cachedCall) return;
        cachedCall = callNumber;
        failuresInARow = 0;
        cached = cacheTtlMs > 0 ? { keys, until: now() + cacheTtlMs } : undefined;
      }, () => undefined);
      const settled = withTimeout(call, SECRET_CALL_TIMEOUT_MS, () =>
        unavailable(`the secret function did not settle within ${SECRET_CALL_TIMEOUT_MS / 1000} s`),
      );
      settled.then(
        () => {
          // The call fulfilled in time, so the callback above has reset the count already.
          pending = undefined;
        },
        () => {
          pending = undefined;
          failuresInARow += 1;
        },
      );
      pending = settled;
    }
    return pending;
  };
  return { fixed: undefined, resolve };
}

async function fetchAndCheck<Key>(fetchSecrets: () => unknown, toKey: (secret: string) => Key): Promise<readonly Key[]> {
  let value: unknown;
  try {
    value = await fetchSecrets();
  } catch (error) {
    throw unavailable('the secret function threw or rejected', error);
  }
  return checkedList(value, (message) => unavailable(message)).map(toKey);
}

function checkedList(value: unknown, fail: (message: string) => Error): string[] {
  if (value === undefined || value === null) {
    throw fail('secret is missing: pass the signing secret MITPO issued (whsec_...), e.g. process.env.MITPO_WEBHOOK_SECRET');
  }
  const list: unknown[] = Array.isArray(value) ? value : [value];
  if (list.length === 0) throw fail('secret is an empty list: pass at least one signing secret');
  list.forEach((item, index) => {
    const problem = secretProblem(item);
    if (problem !== undefined) throw fail(`${Array.isArray(value) ? `secret[${index}]` : 'secret'} ${problem}`);
  });
  return list as string[];
}

function unavailable(detail: string, cause?: unknown): WebhookVerificationError {
  return new WebhookVerificationError(
    'secret_unavailable',
    `The signing secret could not be resolved (${detail}); the delivery was not handled and can be retried`,
    { cause },
  );
}
