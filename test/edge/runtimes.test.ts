import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { sign } from '../../src';
import { signedDelivery } from '../../src/testing';
import { CHECK_CASES, expectAnswer, type CheckCase } from '../helpers/check-cases';
import { send } from '../helpers/http-client';
import { SECRET } from './checks-app';
import type { Profile } from './checks-app';
import { describeRuntime, serve, type RuntimeName, type Served } from './runtimes';

// The checks table over HTTP, served by mitpo-webhooks/web's fetchHandler() in
// each real runtime (installed from the npm registry by
// scripts/install-edge-runtimes.sh): the same statuses, codes and envelope as
// on Node, duplicates included, with ctx.rawBody a Uint8Array.

const ROWS = CHECK_CASES.filter((check) => !check.skipFor?.includes('fetch'));

/** The app's receiver configuration for a row (the row's own options are Node's). */
function profileOf(check: CheckCase): Profile {
  if (check.setup !== undefined) return 'throwing-handler';
  if (check.options === undefined) return 'plain';
  if (check.options.limit === 1024) return 'limit-1kb';
  if (check.options.replay !== undefined) return 'unreachable-replay';
  throw new Error(`test/edge/checks-app.ts has no profile for "${check.name}": add one`);
}

describe.each(['workerd', 'deno', 'bun'] as RuntimeName[])('mitpo-webhooks/web', (name) => {
  describeRuntime(name, (runtime) => {
    let served: Served;
    beforeAll(async () => {
      served = await serve(runtime, path.join(__dirname, 'checks-worker.ts'));
    }, 90_000);
    afterAll(() => served?.stop());

    it.each(ROWS)('$name → $status $outcome', async (check) => {
      const id = randomUUID();
      const spec = check.request();
      const request = { method: spec.method ?? 'POST', headers: spec.headers, body: spec.body };
      const url = `${served.url}/deliver/${profileOf(check)}/${id}`;
      if (check.sendTwice) expect((await send(url, request)).status).toBe(200);
      const reply = await send(url, request);

      // The status beside the answer's text, so a failure shows which check refused it.
      expect({ status: reply.status, answer: reply.text }).toEqual({ status: check.status, answer: reply.status === check.status ? reply.text : "" });
      expectAnswer(check, reply);
      const runs = JSON.parse((await send(`${served.url}/runs/${id}`, { method: 'GET' })).text) as Array<{ rawBody: string }> | null;
      expect(runs ?? []).toHaveLength(check.runs);
      for (const run of runs ?? []) expect(run.rawBody).toBe(`Uint8Array/${Buffer.byteLength(spec.body)}`);
    });

    it('answers with a receiver made when the module loaded (global scope)', async () => {
      const reply = await send(`${served.url}/at-load`, signedDelivery({ event: 'dispatch.failed', secret: SECRET }));
      expect(reply.status).toBe(200);
      expect(reply.json).toEqual({ success: true });
    });

    it("signs as Node's sign() does, and verifySignature() tells a good signature from a changed body", async () => {
      const body = JSON.stringify({ event: 'dispatch.completed', note: 'héllo ✓' });
      expect((await send(`${served.url}/sign`, { body })).text).toBe(sign(body, SECRET));
      const verify = (payload: string) =>
        send(`${served.url}/verify-signature`, { body: payload, headers: { 'x-mitpo-signature': sign(body, SECRET) } }).then((reply) => reply.json);
      expect(await verify(body)).toEqual({ valid: true });
      expect(await verify(body.replace('héllo', 'hello'))).toEqual({ valid: false });
    });
  });
});
