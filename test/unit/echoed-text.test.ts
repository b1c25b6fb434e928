import { MitpoWebhooks, parseEvent } from '../../src';
import { signedDelivery } from '../../src/testing';
import { SECRET } from '../helpers/recorder';
import { sanitizeText } from '../../src/text/sanitize-text';

// Text a sender controls reaches answers and logs only without control
// characters, bidirectional controls (which reorder what a reader sees) and
// zero-width characters (which make two names that look alike differ).
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/;

describe('text from a request, echoed in an answer, a log record or onFailure', () => {
  it.each([
    ['a right-to-left override in the media type', { 'content-type': 'text/\u202eplain' }, 'unsupported_media_type'],
    ['an isolate in the media type', { 'content-type': 'text/\u2066x\u2069' }, 'unsupported_media_type'],
    ['a zero-width space in the event header', { 'x-mitpo-event': 'dispatch.\u200bfailed' }, 'event_mismatch'],
    ['a byte order mark in the event header', { 'x-mitpo-event': '\ufeffdispatch.failed' }, 'event_mismatch'],
  ])('strips %s', async (_name, override, code) => {
    const records: string[] = [];
    const record = (obj: object, message: string) => records.push(JSON.stringify(obj), message);
    const webhooks = new MitpoWebhooks({ secret: SECRET, logger: { debug: record, info: record, warn: record, error: record } });
    const told: string[] = [];
    webhooks.onFailure((error) => told.push(error.message));
    const delivery = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const { status, body } = await webhooks.receive({ rawBody: delivery.body, headers: { ...delivery.headers, ...override } });
    expect(status).toBeGreaterThanOrEqual(400);
    expect(body).toMatchObject({ error: { code } });
    const answer = JSON.stringify(body);
    // The characters themselves are gone: what is left is still readable.
    for (const text of [answer, ...told, ...records]) expect(text).not.toMatch(UNSAFE);
    expect(told[0]).toMatch(code === 'event_mismatch' ? /dispatch\.failed/ : /text\//);
  });
});

// Found in a hunt: the Arabic letter mark (U+061C), a bidirectional control, was missing from the
// list, and other invisible format characters passed: the soft hyphen, the word joiner, tag characters.
describe('text echoed with any Unicode format character, or any other drawn as nothing', () => {
  it.each([
    ['the Arabic letter mark', '\u061c'],
    ['a soft hyphen', '\u00ad'],
    ['a word joiner', '\u2060'],
    ['an invisible separator', '\u2063'],
    ['a tag character', '\u{e0041}'],
    ['an interlinear annotation anchor', '\ufff9'],
    // Left open by an earlier hunt: characters drawn as nothing that are not format characters.
    ['a Hangul filler', '\u3164'],
    ['a halfwidth Hangul filler', '\uffa0'],
    ['a combining grapheme joiner', '\u034f'],
    ['a variation selector', '\ufe0f'],
    ['a Mongolian free variation selector', '\u180b'],
  ])('strips %s from an event name a refusal quotes', (_name, character) => {
    let message = '';
    try {
      parseEvent({ event: `dispatch.${character}done`, timestamp: '2026-03-22T10:30:00Z', data: {} });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('"dispatch.done"');
    expect(message).not.toMatch(/[\p{Cf}\p{Default_Ignorable_Code_Point}]/u);
  });
});

describe('text echoed with half of a UTF-16 pair', () => {
  // Half of a pair alone is not text: a strict JSON or UTF-8 consumer of a log refuses it.
  const LONE_SURROGATE = /[\ud800-\udfff]/u;
  const refusal = (value: unknown): string => {
    try {
      parseEvent(value);
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error('parseEvent accepted it');
  };

  // Found in review: the cut after 64 characters could fall inside a pair, leaving its first half.
  it('never cuts a character in two: a name cut after 64 characters ends on a whole one', () => {
    const message = refusal({ event: `${'x'.repeat(63)}😀y`, timestamp: '2026-03-22T10:30:00Z', data: {} });
    expect(message).not.toMatch(LONE_SURROGATE);
    expect(message).toContain(`"${'x'.repeat(63)}…"`);
  });

  // Found in a mutation hunt: only 😀 (first half U+D83D) was cut; the last first half, U+DBFF
  // (U+10FC00 to U+10FFFF, private use, which the cleaning keeps), was never tried.
  it('never cuts in two a character whose first half is the last one there is', () => {
    const cut = sanitizeText(`${'a'.repeat(99)}\u{10FFFD}${'x'.repeat(10)}`, 100);
    expect(cut).toBe(`${'a'.repeat(99)}…`);
    expect(cut).not.toMatch(LONE_SURROGATE);
  });

  it('keeps a whole pair that ends exactly at the cut', () => {
    const cut = sanitizeText(`${'a'.repeat(98)}😀${'x'.repeat(10)}`, 100);
    expect(cut).toBe(`${'a'.repeat(98)}😀…`);
    expect(cut).not.toMatch(LONE_SURROGATE);
  });

  it('strips a lone half a sender wrote as a JSON escape, and keeps a whole pair', () => {
    const message = refusal(JSON.parse('{"event":"dispatch.\\ud800done\\ud83d\\ude00","timestamp":"2026-03-22T10:30:00Z","data":{}}'));
    expect(message).not.toMatch(LONE_SURROGATE);
    expect(message).toContain('"dispatch.done😀"');
  });
});

// Found in a hunt: a 16 KB Content-Type of characters the cleaning strips was stripped whole before
// its first 100 characters were kept, which made a forged 415 cost some nine times a plain request.
describe('text echoed from a long value', () => {
  it('looks at no more than four times what it keeps: what lies past that is cut, however much would be stripped', () => {
    expect(sanitizeText(`${'\u200b'.repeat(10_000)}visible`, 100)).toBe('…');
    expect(sanitizeText(`${'\u200b'.repeat(393)}visible and more`, 100)).toBe('visible…');
  });

  it('keeps a text of exactly the length kept whole, with no …', () => {
    expect(sanitizeText('a'.repeat(100), 100)).toBe('a'.repeat(100));
  });

  it('keeps a text whose cleaned form fits, however many characters it had to strip within that', () => {
    expect(sanitizeText(`${'\u200b'.repeat(300)}visible`, 100)).toBe('visible');
    // Found in a mutation hunt: exactly four times what is kept is still looked at whole.
    expect(sanitizeText(`${'\u200b'.repeat(393)}visible`, 100)).toBe('visible');
  });

  it('leaves no half of a pair where it stops looking', () => {
    expect(sanitizeText(`${'\u200b'.repeat(399)}😀${'x'.repeat(100)}`, 100)).toBe('…');
  });
});

// Found in a mutation hunt: no test sent a method longer than the 16 characters the 405 quotes.
// Node's parser takes only the methods it knows; a Fetch runtime hands on any token.
describe('the method a 405 quotes', () => {
  it('is cut to its first 16 characters, with …', async () => {
    const webhooks = new MitpoWebhooks({ secret: SECRET });
    const { body, headers } = signedDelivery({ event: 'dispatch.completed', secret: SECRET });
    const response = await webhooks.fetchHandler()(new Request('http://127.0.0.1/webhooks/mitpo', { method: `PROPFIND${'X'.repeat(100)}`, headers, body }));
    expect(response.status).toBe(405);
    expect(await response.json()).toMatchObject({ error: { message: `MITPO delivers webhooks with POST; PROPFIND${'X'.repeat(8)}… is not allowed here` } });
  });
});
