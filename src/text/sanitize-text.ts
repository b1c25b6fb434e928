/**
 * C0 controls, DEL and C1 controls. C1 matters as much as C0: U+009B is a
 * one-character CSI on many terminals, so a logged `X-MITPO-Event` could repaint
 * the screen of whoever reads the logs.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * Text a sender controls (a media type, an event name, an answer from a server),
 * made safe to put in an answer, a log record or an error message: control
 * characters removed and the result cut to `maxLength` characters, with `…` when cut.
 */
export function sanitizeText(value: string, maxLength = 100): string {
  const stripped = value.replace(CONTROL_CHARACTERS, '');
  return stripped.length > maxLength ? `${stripped.slice(0, maxLength)}…` : stripped;
}
