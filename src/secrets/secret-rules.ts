/**
 * What makes a signing secret usable. Kept in one place so construction-time
 * checks, `sign()` and secrets resolved per delivery agree. Messages describe the
 * problem without ever echoing the value.
 */
export function secretProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `must be a string (got ${value === null ? 'null' : typeof value})`;
  if (value.length === 0) return 'is empty';
  if (value.trim() !== value) {
    return 'has leading or trailing whitespace, almost always a copy-paste slip: remove it (MITPO signs with the secret exactly as issued)';
  }
  return undefined;
}

export function isUsableSecret(value: unknown): value is string {
  return secretProblem(value) === undefined;
}

export function assertValidSecret(value: unknown, label: string): asserts value is string {
  const problem = secretProblem(value);
  if (problem !== undefined) throw new TypeError(`mitpo-webhooks: ${label} ${problem}`);
}
