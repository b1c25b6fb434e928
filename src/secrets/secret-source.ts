import { WebhookVerificationError } from '../errors';
import { PreparedSecret } from '../signature/prepared-secret';
import { secretProblem } from './secret-rules';

/** One secret or several (during a rotation). */
export type Secrets = string | readonly string[];

/**
 * The signing secret: a string, several during a rotation, or a function returning
 * either (or a promise of either), called once per delivery, e.g. to read a
 * secrets manager. Caching a fetched secret is the function's own choice.
 */
export type SecretOption = Secrets | (() => Secrets | PromiseLike<Secrets>);

/** The keys for one delivery: a fixed list checked once at start-up, or fetched and checked each time. */
export type SecretSource = () => readonly PreparedSecret[] | Promise<readonly PreparedSecret[]>;

/** @throws TypeError for a missing, empty or whitespace-padded secret, or an empty list */
export function createSecretSource(option: unknown): SecretSource {
  if (typeof option === 'function') {
    const fetchSecrets = option as () => unknown;
    return () => fetchAndCheck(fetchSecrets);
  }
  const fixed = Object.freeze(
    checkedList(option, (message) => new TypeError(`mitpo-webhooks: ${message}`)).map((secret) => new PreparedSecret(secret, true)),
  );
  return () => fixed;
}

async function fetchAndCheck(fetchSecrets: () => unknown): Promise<readonly PreparedSecret[]> {
  let value: unknown;
  try {
    value = await fetchSecrets();
  } catch (error) {
    throw unavailable('the secret function threw or rejected', error);
  }
  return checkedList(value, (message) => unavailable(message)).map((secret) => new PreparedSecret(secret));
}

function checkedList(value: unknown, fail: (message: string) => Error): string[] {
  if (value === undefined || value === null) {
    throw fail('secret is missing: pass the signing secret MITPO issued (whsec_...), e.g. process.env.MITPO_WEBHOOK_SECRET');
  }
  if (Array.isArray(value)) {
    if (value.length === 0) throw fail('secret is an empty list: pass at least one signing secret');
    value.forEach((item, index) => {
      const problem = secretProblem(item);
      if (problem !== undefined) throw fail(`secret[${index}] ${problem}`);
    });
    return [...value] as string[];
  }
  const problem = secretProblem(value);
  if (problem !== undefined) throw fail(`secret ${problem}`);
  return [value as string];
}

function unavailable(detail: string, cause?: unknown): WebhookVerificationError {
  return new WebhookVerificationError(
    'secret_unavailable',
    `The signing secret could not be resolved (${detail}); the delivery was not handled and can be retried`,
    { cause },
  );
}
