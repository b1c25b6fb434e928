/**
 * Characters that must never reach an answer, a log record or a terminal raw:
 * controls (Unicode's Cc: C0, DEL and C1; U+009B is a one-character CSI on
 * many terminals) and format characters (Cf), which are invisible: the
 * bidirectional controls (U+061C, U+200E, U+200F, U+202A–U+202E,
 * U+2066–U+2069) reorder what a reader sees, so a logged event name can
 * disguise itself, and the zero-width ones, the soft hyphen, the word joiner
 * and tag characters make two names that look alike differ. So do the other
 * characters Unicode says are drawn as nothing when not supported
 * (Default_Ignorable_Code_Point: Hangul fillers, the combining grapheme joiner,
 * variation selectors), which are not all Cf. Also half of a
 * UTF-16 pair on its own (Cs: a JSON escape can write one), which is not text:
 * strict JSON and UTF-8 readers of a log refuse it. With the `u` flag, Cs
 * matches only a half alone, never a pair.
 */
const UNSAFE_CHARACTERS = /[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}\p{Cs}]/gu;

/** How much of a text is looked at, in characters per character kept. */
const LOOKED_AT_PER_KEPT = 4;

/**
 * Text a sender controls (a media type, an event name, an answer from a server),
 * made safe to put in an answer, a log record or an error message: unsafe
 * characters removed and the result cut to `maxLength` characters, with `…` when cut
 * (and when there was more than four times `maxLength` to look at).
 */
export function sanitizeText(value: string, maxLength = 100): string {
  // Only so much is looked at: stripping a whole 16 KB header to keep its first 100
  // characters would be work a sender makes us do for nothing. A pair cut in two where
  // the look stops leaves its first half alone, which the pattern strips.
  const lookedAt = maxLength * LOOKED_AT_PER_KEPT;
  const stoppedEarly = value.length > lookedAt;
  const stripped = (stoppedEarly ? value.slice(0, lookedAt) : value).replace(UNSAFE_CHARACTERS, '');
  if (stripped.length <= maxLength) return stoppedEarly ? `${stripped}…` : stripped;
  // A cut between the halves of a pair would leave the first alone: cut before it.
  const end = isFirstHalfOfPair(stripped.charCodeAt(maxLength - 1)) ? maxLength - 1 : maxLength;
  return `${stripped.slice(0, end)}…`;
}

function isFirstHalfOfPair(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
