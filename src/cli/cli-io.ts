import { sqlStateOf } from '../errors';
import { sanitizeText } from '../text/sanitize-text';
import { withTimeout } from '../with-timeout';

/** What a command may touch, passed in so each command reads as a function of it. */
export interface CliIo {
  env: NodeJS.ProcessEnv;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean | undefined };
  out(line: string): void;
  err(line: string): void;
  /** Aborted when stdout's reader has gone away (`… | head`): a long-running command then stops. */
  outputClosed?: AbortSignal | undefined;
}

/** Bad arguments: the command prints the message and its usage, and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * Text from the command line or a URL as a message may show it: a URL's user name and
 * password (`redis://:secret@host`) left out, since what a command prints ends up in CI logs.
 */
export function withoutUserInfo(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/?#@\s]*@/gi, '$1…@');
}

/** An argument the command does not take, shown without a URL's credentials. */
export function unexpectedArgument(argument: string | undefined): UsageError {
  return new UsageError(`unexpected argument ${JSON.stringify(withoutUserInfo(String(argument)))}`);
}

/** Something went wrong that is not the arguments' fault: exit 1 with the message. */
export class CommandError extends Error {
  override readonly name = 'CommandError';
}

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/**
 * Whether text has a character sanitizeText strips: a C0 or C1 control, DEL, an
 * invisible format character (a bidirectional control, a zero-width character, a
 * soft hyphen …), another character drawn as nothing (a Hangul filler, a variation
 * selector), or half of a UTF-16 pair on its own. Used where stripping would
 * change a value's meaning (a secret, an event name), so the value is refused instead.
 */
export function hasUnprintableCharacters(text: string): boolean {
  return sanitizeText(text, Number.POSITIVE_INFINITY) !== text;
}

/** What a refusal says of a value {@link hasUnprintableCharacters} matched, so every command names the same set. */
export const UNPRINTABLE_CHARACTERS = 'characters that cannot be printed as they are (control, bidirectional, zero-width, drawn as nothing, or half of a UTF-16 pair)';

/** What `deliveries retry` says of a retried delivery, whatever its queue. */
export const RETRY_NOTE = 'an operator retried it, so it runs even if its event is older than maxEventAge';

/**
 * `work` against a store (`Redis`, `Postgres`) within `ms`: a store that does not
 * answer, or fails, is a CommandError naming it; the command's own errors pass through.
 */
export async function storeCall<T>(store: string, ms: number, work: Promise<T>): Promise<T> {
  try {
    return await withTimeout(work, ms, () => new CommandError(`${store} did not answer within ${ms / 1000} s`));
  } catch (error) {
    if (error instanceof CommandError || error instanceof UsageError) throw error;
    const message = sanitizeText((error as Error).message ?? String(error), 200);
    // An answer with an error (Postgres' SQLSTATE, a Redis error reply) is no network trouble.
    const state = sqlStateOf(error);
    if (state !== undefined) throw new CommandError(`${store} refused the command (${state} ${message})`);
    if ((error as Error | null)?.name === 'ReplyError') throw new CommandError(`${store} refused the command (${message})`);
    throw new CommandError(`${store} could not be reached (${message})`);
  }
}

/**
 * A time kept in a queue's storage, in milliseconds since the epoch, as ISO
 * text; null when it is no date (storage is not an authority: one odd job must
 * not stop a listing of the others).
 */
export function storedTime(ms: unknown): string | null {
  // A number as BullMQ keeps it, or digits as node-postgres gives a bigint.
  const time = typeof ms === 'number' || (typeof ms === 'string' && /^\d{1,16}$/.test(ms)) ? new Date(Number(ms)) : undefined;
  return time === undefined || Number.isNaN(time.getTime()) ? null : time.toISOString();
}
