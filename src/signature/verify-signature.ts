import { nodePlatform } from '../platform/node-platform';
import { isUsableSecret } from '../secrets/secret-rules';
import { readSignatureHeader } from './signature-header';

/**
 * Checks an `X-MITPO-Signature` header against the raw body, in constant time.
 *
 * Never throws: junk of any kind (a missing or repeated header, a malformed
 * value, an unusable secret, a payload that is not bytes or whose buffer was
 * detached) is simply `false`.
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
  try {
    if (typeof payload !== 'string' && !(payload instanceof Uint8Array)) return false;
    const signatureHex = readSignatureHeader(signatureHeader);
    const secrets: unknown[] = Array.isArray(secretOrSecrets) ? secretOrSecrets : [secretOrSecrets];
    const keys = secrets.filter(isUsableSecret).map((secret) => nodePlatform.signingKey(secret));
    const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    return nodePlatform.signatureMatches(keys, bytes, signatureHex) as boolean;
  } catch {
    return false;
  }
}
