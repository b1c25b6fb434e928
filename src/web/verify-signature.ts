import { webPlatform } from '../platform/web-platform';
import { isUsableSecret } from '../secrets/secret-rules';
import { readSignatureHeader } from '../signature/signature-header';

const UTF8 = new TextEncoder();

/**
 * Checks an `X-MITPO-Signature` header against the raw body through WebCrypto
 * (`crypto.subtle.verify`, a constant-time comparison).
 *
 * Never rejects: junk of any kind (a missing or repeated header, a malformed
 * value, an unusable secret, a payload that is not bytes) resolves to `false`.
 *
 * @param payload - the raw body exactly as received (Uint8Array, or a string taken as UTF-8)
 * @param signatureHeader - the header's value, e.g. `request.headers.get('x-mitpo-signature')`
 * @param secretOrSecrets - one secret, or several during a rotation (any may match)
 * @returns a promise of true when the signature matches one of the secrets
 * @example
 * await verifySignature(rawBody, request.headers.get('x-mitpo-signature'), [newSecret, oldSecret]);
 */
export async function verifySignature(
  payload: string | Uint8Array,
  signatureHeader: string | readonly string[] | undefined | null,
  secretOrSecrets: string | readonly string[],
): Promise<boolean> {
  try {
    if (typeof payload !== 'string' && !(payload instanceof Uint8Array)) return false;
    const signatureHex = readSignatureHeader(signatureHeader);
    const secrets: unknown[] = Array.isArray(secretOrSecrets) ? secretOrSecrets : [secretOrSecrets];
    const keys = secrets.filter(isUsableSecret).map((secret) => webPlatform.signingKey(secret));
    const bytes = typeof payload === 'string' ? UTF8.encode(payload) : payload;
    return await webPlatform.signatureMatches(keys, bytes, signatureHex);
  } catch {
    return false;
  }
}
