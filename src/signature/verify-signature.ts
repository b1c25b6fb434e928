import { digestMatchesAny } from './hmac';
import { PreparedSecret } from './prepared-secret';
import { readSignatureHeader } from './signature-header';
import { isUsableSecret } from '../secrets/secret-rules';

/**
 * Checks an `X-MITPO-Signature` header against the raw body, in constant time.
 *
 * Never throws: junk of any kind (a missing or repeated header, a malformed
 * value, an unusable secret, a payload that is not bytes) is simply `false`.
 *
 * @param payload - the raw body exactly as received (Buffer, Uint8Array, or a string taken as UTF-8)
 * @param signatureHeader - the header as Node gives it: `string | string[] | undefined`
 * @param secretOrSecrets - one secret, or several during a rotation (any may match)
 * @returns true when the signature matches one of the secrets
 * @example
 * verifySignature(rawBody, req.headers['x-mitpo-signature'], [newSecret, oldSecret]);
 */
export function verifySignature(
  payload: string | Uint8Array,
  signatureHeader: string | readonly string[] | undefined | null,
  secretOrSecrets: string | readonly string[],
): boolean {
  if (typeof payload !== 'string' && !(payload instanceof Uint8Array)) return false;
  const header = readSignatureHeader(signatureHeader);
  if (header.kind !== 'valid') return false;
  const secrets = typeof secretOrSecrets === 'string' ? [secretOrSecrets] : secretOrSecrets;
  if (!Array.isArray(secrets)) return false;
  const usable = secrets.filter(isUsableSecret).map((secret) => new PreparedSecret(secret));
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  return usable.length > 0 && digestMatchesAny(bytes, header.digest, usable);
}
