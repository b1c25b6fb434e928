/**
 * What makes a signing secret usable. Kept in one place so construction-time
 * checks, `sign()`, the CLI and secrets resolved per delivery agree. Each rule
 * catches a copy-paste slip that would otherwise make every delivery fail with
 * 401; messages describe the problem without ever echoing the value.
 */
export function secretProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `must be a string (got ${value === null ? 'null' : typeof value})`;
  if (value.length === 0) return 'is empty';
  if (value.trim() !== value) {
    return 'has leading or trailing whitespace, almost always a copy-paste slip: remove it (MITPO signs with the secret exactly as issued)';
  }
  if (/^(["'`]).*\1$/s.test(value) && value.length >= 2) {
    return 'is wrapped in quotes, almost always a copy-paste slip (e.g. quotes kept from a .env file): remove them';
  }
  if (value === 'undefined' || value === 'null') {
    return `is the text "${value}", which is what an unset environment variable reads as once written into a string (\`\${process.env.NAME}\`): set the variable`;
  }
  if (value === SECRET_PREFIX) return `is only the "${SECRET_PREFIX}" prefix: paste the whole secret MITPO issued`;
  return undefined;
}

/** The prefix every secret MITPO issues starts with. */
export const SECRET_PREFIX = 'whsec_';

export function isUsableSecret(value: unknown): value is string {
  return secretProblem(value) === undefined;
}

export function assertValidSecret(value: unknown, label: string): asserts value is string {
  const problem = secretProblem(value);
  if (problem !== undefined) throw new TypeError(`mitpo-webhooks: ${label} ${problem}`);
}
