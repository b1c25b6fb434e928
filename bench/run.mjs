// `npm run bench [-- --quick]`: each receiver in its own process pinned to core 0,
// autocannon in another pinned to core 1, scenarios interleaved over several
// rounds, medians reported with CPU time per request and its ratios.
import os from 'node:os';
import { FLOOR_SCENARIOS, OTEL_SCENARIOS, SCENARIOS } from './server.mjs';
import { hasTaskset, start } from './child-process.mjs';
import { runMicro } from './micro.mjs';

const [BARE, HAND, HAND_REPLAY, OURS, OCTOKIT, EXPRESS_HAND, OURS_EXPRESS, FASTIFY_HAND, FASTIFY_HAND_REPLAY, OURS_FASTIFY] = SCENARIOS;
/** A scenario's number in the table. */
const n = (name) => SCENARIOS.indexOf(name) + 1;
void BARE;

const quick = process.argv.includes('--quick');
const flag = (name) => {
  const index = process.argv.indexOf(name);
  return index < 0 ? undefined : process.argv[index + 1];
};
const ROUNDS = Number(flag('--rounds') ?? (quick ? 3 : 5));
const SIZES = [
  { label: '300 B', bytes: 300, amount: quick ? 12_000 : 30_000 },
  { label: '64 KB', bytes: 65_536, amount: quick ? 1200 : 3000 },
].filter((size) => (flag('--size') === undefined && !process.argv.includes('--floors')) || size.label.startsWith(flag('--size') ?? '300'));
const ONLY = flag('--only');
const OTEL = process.argv.includes('--otel');
const FLOORS = process.argv.includes('--floors');
const SKIP_MICRO = process.argv.includes('--no-micro');
const CONNECTIONS = 16;
const RATE = flag('--rate') === undefined ? undefined : Number(flag('--rate'));


const median = (list) => {
  const sorted = [...list].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

async function main() {
  console.log(`mitpo-webhooks benchmark${quick ? ' (--quick)' : ''}: node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}`);
  console.log(hasTaskset ? 'receivers pinned to core 0, load generator to core 1 (taskset)' : 'taskset not available: processes not pinned');
  console.log(`${ROUNDS} rounds, scenarios interleaved; ${CONNECTIONS} connections; every request a unique, correctly signed body\n`);

  const servers = {};
  const scenarios = OTEL
    ? OTEL_SCENARIOS
    : FLOORS
      ? [HAND_REPLAY, ...FLOOR_SCENARIOS, OURS, OCTOKIT]
      : ONLY === undefined
      ? SCENARIOS
      : SCENARIOS.filter((name, i) => ONLY.split(',').includes(String(i + 1)));
  for (const name of scenarios) {
    const server = start('./server.mjs', [name], 0);
    servers[name] = { ...server, port: (await server.ask(undefined, (m) => m.port)).port };
  }
  const load = start('./load.mjs', [], 1);
  await load.ask(undefined, (m) => m.started);

  const samples = {};
  let failures = 0;
  const started = Date.now();
  const runOnce = async (name, size, record) => {
    const server = servers[name];
    const forged = size.forged === true;
    await load.ask({ cmd: 'prepare', size: size.bytes, amount: size.amount, github: name.startsWith('@octokit'), forged }, (m) => m.ready);
    const before = await server.ask('stats', (m) => m.cpuMicros !== undefined);
    const result = await load.ask({ cmd: 'go', url: `http://127.0.0.1:${server.port}/webhooks/mitpo`, connections: CONNECTIONS, rate: RATE }, (m) => m.rps !== undefined);
    const after = await server.ask('stats', (m) => m.cpuMicros !== undefined);
    const handled = after.runs - before.runs;
    const answered = forged ? result.refused : result.ok;
    const expectRuns = name === 'bare node:http' || forged ? 0 : result.ok;
    if (answered !== size.amount || result.notOk - (forged ? result.refused : 0) > 0 || handled !== expectRuns) {
      failures += 1;
      console.error(`FAILED ${name} ${size.label}: ${result.ok} 2xx, ${result.notOk} other, ${handled} handler runs`);
    }
    if (!record) return;
    const key = `${name}|${size.label}`;
    samples[key] ??= { rps: [], p50: [], p99: [], cpu: [], rss: 0 };
    samples[key].rps.push(result.rps);
    samples[key].p50.push(result.p50);
    samples[key].p99.push(result.p99);
    samples[key].cpu.push((after.cpuMicros - before.cpuMicros) / size.amount);
    samples[key].rss = Math.max(samples[key].rss, after.maxRss);
  };
  // Forged 300 B deliveries (well-formed, one hex digit off) for mitpo-webhooks and octokit on node:http.
  const forgedRuns = OTEL || FLOORS || !SIZES.some((size) => size.bytes === 300)
    ? []
    : [OURS, OCTOKIT].filter((name) => scenarios.includes(name)).map((name) => [name, { label: '300 B forged', bytes: 300, amount: quick ? 12_000 : 30_000, forged: true }]);

  // Warm-up, unrecorded. --quick skips it to stay under a minute (every run lasts about a
  // second however short): its first round is then the cold one, which the median drops.
  if (!quick) {
    for (const size of SIZES) for (const name of scenarios) await runOnce(name, { ...size, amount: Math.ceil(size.amount / 4) }, false);
  }
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order each round, so no scenario always runs first or last.
    const order = scenarios.map((_, i) => scenarios[(i + round) % scenarios.length]);
    for (const size of SIZES) for (const name of order) await runOnce(name, size, true);
    for (const [name, size] of round % 2 ? [...forgedRuns].reverse() : forgedRuns) await runOnce(name, size, true);
    process.stdout.write(`round ${round + 1}/${ROUNDS} done (${Math.round((Date.now() - started) / 1000)} s)\n`);
  }
  for (const { child } of [...Object.values(servers), load]) child.send('exit');

  const cpu = (name, label) => (samples[`${name}|${label}`] ? median(samples[`${name}|${label}`].cpu) : Number.NaN);
  const list = OTEL ? OTEL_SCENARIOS : FLOORS ? [...SCENARIOS, ...FLOOR_SCENARIOS] : SCENARIOS;
  console.log('');
  for (const size of [...SIZES, ...(forgedRuns.length > 0 ? [forgedRuns[0][1]] : [])]) {
    console.log(`${size.label} body (medians of ${ROUNDS} rounds × ${size.amount} requests)`);
    const header = ['scenario', 'req/s', 'p50 ms', 'p99 ms', 'peak RSS', 'CPU µs/req', '÷ octokit'];
    const rows = list.flatMap((name, i) => {
      const s = samples[`${name}|${size.label}`];
      if (s === undefined) return [];
      const c = cpu(name, size.label);
      return [[
        `(${i + 1}) ${name}`,
        Math.round(median(s.rps)).toString(),
        median(s.p50).toFixed(1),
        median(s.p99).toFixed(1),
        `${Math.round(s.rss / 1024 / 1024)} MB`,
        c.toFixed(1),
        (c / cpu(OCTOKIT, size.label)).toFixed(2),
      ]];
    });
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
    console.log(line(header));
    for (const row of rows) console.log(line(row));
    console.log('');
  }

  if (OTEL) {
    const [absent, apiOnly, sdk] = OTEL_SCENARIOS;
    console.log('OpenTelemetry (ratios of medians in this run)');
    for (const size of SIZES) {
      console.log(`  ${size.label}: API without SDK ÷ package absent ${(cpu(apiOnly, size.label) / cpu(absent, size.label)).toFixed(2)}; ` +
        `SDK with in-memory exporter ÷ package absent ${(cpu(sdk, size.label) / cpu(absent, size.label)).toFixed(2)}`);
    }
    process.exit(failures > 0 ? 1 : 0);
  }
  if (FLOORS) {
    const floor = FLOOR_SCENARIOS.at(-1);
    console.log('the floor for mitpo-webhooks\' semantics, written by hand (ratios of medians in this run)');
    console.log(`  CPU/req (${list.indexOf(floor) + 1}) ÷ (${n(OCTOKIT)}) @octokit/webhooks: ${(cpu(floor, '300 B') / cpu(OCTOKIT, '300 B')).toFixed(2)}`);
    console.log(`  CPU/req (${n(OURS)}) mitpo-webhooks ÷ (${list.indexOf(floor) + 1}) that floor: ${(cpu(OURS, '300 B') / cpu(floor, '300 B')).toFixed(2)}`);
    process.exit(failures > 0 ? 1 : 0);
  }
  const micro = SKIP_MICRO ? [] : await runMicro({ quick });
  console.log('in-process micro-benchmark (ops/s, best of interleaved medians)');
  for (const row of micro) {
    console.log(
      `  ${row.size === 300 ? '300 B' : '64 KB'}: node:crypto floor ${Math.round(row.floor)}, verifySignature ${Math.round(row.verifySignature)} (${(row.verifySignature / row.floor).toFixed(2)} × floor), ` +
        `hand-written ${Math.round(row.handWritten)} (${(row.handWritten / row.floor).toFixed(2)} × floor), verify() ${Math.round(row.verify)} (${(row.verify / row.floor).toFixed(2)} × floor, ${(row.verify / row.handWritten).toFixed(2)} × hand-written)`,
    );
  }

  // The budget (issue #18), CPU per request at 300 B with async handlers and replay protection on.
  const ratio = (a, b, label = '300 B') => cpu(a, label) / cpu(b, label);
  const budget = [
    [`(${n(OURS)}) ÷ (${n(OCTOKIT)}) @octokit/webhooks on node:http ≤ 1.10`, ratio(OURS, OCTOKIT), 1.1],
    [`(${n(OURS_EXPRESS)}) ÷ (${n(EXPRESS_HAND)}) Express 5 + express.raw() + hand-written ≤ 0.95`, ratio(OURS_EXPRESS, EXPRESS_HAND), 0.95],
    [`(${n(OURS_FASTIFY)}) ÷ (${n(FASTIFY_HAND_REPLAY)}) Fastify 5 hand-written + Map replay check ≤ 1.30`, ratio(OURS_FASTIFY, FASTIFY_HAND_REPLAY), 1.3],
    ['forged 300 B: mitpo-webhooks ÷ @octokit/webhooks on node:http ≤ 1.00', ratio(OURS, OCTOKIT, '300 B forged'), 1.0],
  ];
  console.log('\nbudget (ratios of medians in this run)');
  for (const [label, value, limit] of budget) {
    if (!Number.isNaN(value)) console.log(`  ${value <= limit ? 'met   ' : 'MISSED'} CPU/req ${label}: ${value.toFixed(2)}`);
  }
  console.log('against the floors (for information)');
  for (const [label, value] of [
    [`300 B: (${n(OURS)}) ÷ (${n(HAND)}) hand-written on node:http`, ratio(OURS, HAND)],
    [`300 B: (${n(OURS)}) ÷ (${n(HAND_REPLAY)}) hand-written on node:http + Map replay check`, ratio(OURS, HAND_REPLAY)],
    [`300 B: (${n(OURS_FASTIFY)}) ÷ (${n(FASTIFY_HAND)}) Fastify 5 hand-written`, ratio(OURS_FASTIFY, FASTIFY_HAND)],
    [`64 KB: (${n(OURS)}) ÷ (${n(OCTOKIT)}) @octokit/webhooks`, ratio(OURS, OCTOKIT, '64 KB')],
    [`64 KB: (${n(OURS_EXPRESS)}) ÷ (${n(EXPRESS_HAND)}) Express 5 + express.raw() + hand-written`, ratio(OURS_EXPRESS, EXPRESS_HAND, '64 KB')],
    [`64 KB: (${n(OURS_FASTIFY)}) ÷ (${n(FASTIFY_HAND_REPLAY)}) Fastify 5 hand-written + Map replay check`, ratio(OURS_FASTIFY, FASTIFY_HAND_REPLAY, '64 KB')],
  ]) {
    if (!Number.isNaN(value)) console.log(`  CPU/req ${label}: ${value.toFixed(2)}`);
  }
  if (failures > 0) {
    console.error(`\n${failures} runs had unexpected answers or a handler count that differed from the 2xx count`);
    process.exit(1);
  }
  process.exit(0);
}

const mode = process.argv.includes('--queue')
  ? import('./queue.mjs').then((m) => m.runQueueBench())
  : process.argv.includes('--postgres')
    ? import('./postgres.mjs').then((m) => m.runPostgresBench())
    : process.argv.includes('--web')
      ? import('./web.mjs').then((m) => m.runWebBench({ quick }))
      : process.argv.includes('--instructions')
        ? import('./instructions.mjs').then((m) => m.runInstructionsBench({ only: ONLY?.split(',').map(Number) }))
        : main();
mode.catch((error) => {
  console.error(error);
  process.exit(1);
});
