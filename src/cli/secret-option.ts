import { secretProblem } from '../secrets/secret-rules';
import { UsageError } from './cli-io';

/** `--secret`, else `MITPO_WEBHOOK_SECRET`; checked like the library checks it, never echoed. */
export function secretFrom(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const secret = flag ?? env.MITPO_WEBHOOK_SECRET;
  if (secret === undefined || secret === '') {
    throw new UsageError('no signing secret: pass --secret whsec_... or set MITPO_WEBHOOK_SECRET');
  }
  const problem = secretProblem(secret);
  if (problem !== undefined) throw new UsageError(`the signing secret ${problem}`);
  return secret;
}
