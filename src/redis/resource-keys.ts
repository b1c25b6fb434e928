/**
 * What the Redis stores of `ordering` share: the replay store and the BullMQ
 * queue keep a resource's turn in the same two keys and answer a stale event
 * the same way, each from Lua of its own (the store's scripts also claim the
 * delivery, in the same step).
 */

/** A resource's two keys under `prefix`: its applied position, and the token of whoever holds its turn. */
export function resourceKeys(prefix: string, resource: string): { applied: string; holder: string } {
  return { applied: `${prefix}resource:${resource}:applied`, holder: `${prefix}resource:${resource}:holder` };
}

/** A script's `stale:<position>` answer as `{ stale }`; undefined for any other answer. */
export function staleAnswer(answer: unknown): { stale: number } | undefined {
  const stale = typeof answer === 'string' && answer.startsWith('stale:') ? Number(answer.slice(6)) : NaN;
  return Number.isFinite(stale) ? { stale } : undefined;
}
