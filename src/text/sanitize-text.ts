/**
 * Characters that must never reach an answer, a log record or a terminal raw:
 * C0 controls, DEL and C1 controls (U+009B is a one-character CSI on many
 * terminals), the bidirectional controls (U+202A–U+202E, U+2066–U+2069: they
 * reorder what a reader sees, so a logged event name can disguise itself) and
 * zero-width characters (U+200B–U+200F, U+FEFF: they make two names that look
 * alike differ). Also half of a UTF-16 pair on its own (a JSON escape can
 * write one), which is not text: strict JSON and UTF-8 readers of a log refuse
 * it. With the `u` flag the range matches only a half alone, never a pair.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]/gu;

/**
 * Text a sender controls (a media type, an event name, an answer from a server),
 * made safe to put in an answer, a log record or an error message: unsafe
 * characters removed and the result cut to `maxLength` characters, with `…` when cut.
 */
export function sanitizeText(value: string, maxLength = 100): string {
  const stripped = value.replace(UNSAFE_CHARACTERS, '');
  if (stripped.length <= maxLength) return stripped;
  // A cut between the halves of a pair would leave the first alone: cut before it.
  const end = isFirstHalfOfPair(stripped.charCodeAt(maxLength - 1)) ? maxLength - 1 : maxLength;
  return `${stripped.slice(0, end)}…`;
}

function isFirstHalfOfPair(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
