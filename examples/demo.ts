// `npm run demo`: starts the example Express receiver on a free local port, sends it
// signed deliveries over real HTTP (good, tampered, stale, replayed, unknown) and
// prints what each got back and which handler ran. Exits 0 when every outcome is
// the expected one. `npm run demo -- --serve` keeps the receiver running instead.
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { MITPO_EVENT_NAMES } from 'mitpo-webhooks';
import { sendDelivery, signedDelivery, type SignedDelivery } from 'mitpo-webhooks/testing';
import { createReceiverApp, WEBHOOK_PATH } from './express-receiver';

const secret = process.env.MITPO_WEBHOOK_SECRET ?? `whsec_demo_${randomBytes(12).toString('hex')}`;
const now = () => Math.floor(Date.now() / 1000);

interface Scenario {
  name: string;
  delivery: () => SignedDelivery;
  expect: string;
  /** The handler that must run, or '(none)'. */
  handler: string;
  sendTwice?: boolean;
}

const scenarios: Scenario[] = [
  ...MITPO_EVENT_NAMES.map((event) => ({
    name: event,
    delivery: () => signedDelivery({ event, secret }),
    expect: '200 success',
    handler: `on(${event})`,
  })),
  {
    name: 'tampered body',
    delivery: () => {
      const good = signedDelivery({ event: 'dispatch.completed', secret });
      return { ...good, body: good.body.replace('23851234567890', '99999999999999') };
    },
    expect: '401 invalid_signature',
    handler: '(none)',
  },
  {
    name: 'wrong secret',
    delivery: () => signedDelivery({ event: 'dispatch.completed', secret: 'whsec_not_yours' }),
    expect: '401 invalid_signature',
    handler: '(none)',
  },
  {
    name: 'stale X-MITPO-Timestamp',
    delivery: () => signedDelivery({ event: 'dispatch.failed', secret, sentAt: now() - 3600 }),
    expect: '401 timestamp_out_of_tolerance',
    handler: '(none)',
  },
  {
    name: 'stale event, forged fresh header',
    delivery: () => signedDelivery({ event: 'dispatch.failed', secret, timestamp: now() - 4 * 86_400 }),
    expect: '401 event_too_old',
    handler: '(none)',
  },
  {
    name: 'replayed delivery',
    delivery: () =>
      signedDelivery({
        event: 'dispatch.accepted',
        secret,
        data: { dispatch_id: 'dsp_replay', channel: 'meta_ads', status: 'accepted' },
      }),
    sendTwice: true,
    expect: '200 duplicate',
    handler: '(none)',
  },
  {
    name: 'unknown event type',
    delivery: () => signedDelivery({ event: 'dispatch.cancelled', secret, data: { dispatch_id: 'dsp_x' } }),
    expect: '200 success',
    handler: 'onAny',
  },
];

async function main(): Promise<number> {
  const serve = process.argv.includes('--serve');
  const ran: string[] = [];
  const { app } = serve
    ? createReceiverApp({ secret, logger: console }, (handler, detail) => console.log(`${handler}: ${detail}`))
    : createReceiverApp({ secret }, (handler) => ran.push(handler));
  const port = serve ? Number(process.env.PORT ?? 3000) : 0;
  const server = app.listen(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${WEBHOOK_PATH}`;

  if (serve) {
    const sample = signedDelivery({ event: 'dispatch.completed', secret });
    const headerArgs = Object.entries(sample.headers).map(([k, v]) => `-H '${k}: ${v}'`).join(' ');
    console.log(`Receiving MITPO webhooks on ${url} (Ctrl-C to stop)`);
    console.log(`Signing secret: ${process.env.MITPO_WEBHOOK_SECRET ? 'from MITPO_WEBHOOK_SECRET' : secret}\n`);
    console.log('Send it signed deliveries from another terminal with the mitpo-webhooks command:\n');
    const secretEnv = process.env.MITPO_WEBHOOK_SECRET ? '' : `MITPO_WEBHOOK_SECRET=${secret} `;
    console.log(`  ${secretEnv}npx mitpo-webhooks send ${url} --event dispatch.completed`);
    console.log(`  ${secretEnv}npx mitpo-webhooks send ${url} --event dispatch.failed --secret whsec_wrong\n`);
    console.log('or with curl (this one is valid for 5 minutes):\n');
    console.log(`  curl -sS -X POST ${url} ${headerArgs} --data '${sample.body}'\n`);
    return new Promise<number>(() => {});
  }

  console.log(`Receiver listening on ${url}\n`);
  const rows: string[][] = [];
  let failures = 0;
  for (const scenario of scenarios) {
    const delivery = scenario.delivery();
    ran.length = 0;
    if (scenario.sendTwice) await sendDelivery(url, delivery);
    if (scenario.sendTwice) ran.length = 0;
    const { status, body } = await sendDelivery(url, delivery);
    const got = `${status} ${body.success ? (body.duplicate ? 'duplicate' : 'success') : body.error.code}`;
    const handlers = ran.join(', ') || '(none)';
    const ok = got === scenario.expect && handlers === scenario.handler;
    if (!ok) failures += 1;
    rows.push([scenario.name, `${scenario.expect}, ${scenario.handler}`, got, handlers, ok ? 'ok' : 'UNEXPECTED']);
  }
  printTable(['delivery', 'expected', 'answered', 'handler that ran', ''], rows);
  server.close();
  console.log(
    failures === 0
      ? `\nAll ${scenarios.length} deliveries got the expected answer.`
      : `\n${failures} of ${scenarios.length} deliveries got an unexpected answer.`,
  );
  return failures === 0 ? 0 : 1;
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  console.log(line(header));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const row of rows) console.log(line(row));
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
