import { createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { PreparedSecret, SMALL_BODY_BYTES } from '../../src/signature/prepared-secret';

const hmac = (secret: string, body: Uint8Array) => createHmac('sha256', secret).update(body).digest();

describe('PreparedSecret (the HMAC the pipeline verifies with)', () => {
  // RFC 4231, test cases 1 and 2: the keys that are valid UTF-8 strings.
  it.each([
    ['\x0b'.repeat(20), 'Hi There', 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'],
    ['Jefe', 'what do ya want for nothing?', '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'],
  ])('matches RFC 4231 vector with key %j', (key, data, expected) => {
    const secret = new PreparedSecret(key);
    expect(secret.matches(Buffer.from(data), Buffer.from(expected, 'hex'))).toBe(true);
    const wrong = Buffer.from(expected, 'hex');
    wrong[31] = wrong[31]! ^ 1;
    expect(secret.matches(Buffer.from(data), wrong)).toBe(false);
  });

  it('agrees with createHmac on both sides of the one-shot size limit, for keys longer than a block, short- or long-lived', () => {
    const sizes = [0, 1, 55, 56, 63, 64, 65, 300, SMALL_BODY_BYTES - 1, SMALL_BODY_BYTES, SMALL_BODY_BYTES + 1, 70_000];
    const keys = ['whsec_a', 'whsec_' + 'k'.repeat(58), 'whsec_' + 'k'.repeat(59), 'whsec_' + 'ü€😀'.repeat(40)];
    for (const key of keys) {
      for (const secret of [new PreparedSecret(key), new PreparedSecret(key, true)]) {
        for (const size of sizes) {
          const body = randomBytes(size);
          expect(secret.matches(body, hmac(key, body))).toBe(true);
          expect(secret.matches(body, hmac(`${key}x`, body))).toBe(false);
        }
      }
    }
  });

  it('gives the same answer as createHmac for any key and body, whatever was verified before', () => {
    const a = new PreparedSecret('whsec_first');
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 200 }), fc.uint8Array({ maxLength: 2000 }), fc.boolean(), (key, body, tamper) => {
        const secret = new PreparedSecret(key);
        // Interleave another key's check, so leftovers in the shared scratch would show.
        a.matches(randomBytes(body.length + 7), hmac('whsec_first', body));
        const digest = hmac(key, body);
        if (tamper) digest[0] = digest[0]! ^ 0x80;
        expect(secret.matches(body, digest)).toBe(!tamper);
      }),
      { seed: 20_261_127, numRuns: 300 },
    );
  });
});
