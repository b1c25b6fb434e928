// `npm run bench [-- --quick]`: each receiver in its own process pinned to core 0,
// autocannon in another pinned to core 1, scenarios interleaved over several
// rounds, medians reported with CPU time per request and its ratios.
import { fork, spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { OTEL_SCENARIOS, SCENARIOS } from './server.mjs';
import { runMicro } from './micro.mjs';

const quick = process.argv.includes('--quick');
const flag = (name) => {
  const index = process.argv.indexOf(name);
  return index < 0 ? undefined : process.argv[index + 1];
};
const ROUNDS = Number(flag('--rounds') ?? (quick ? 3 : 5));
const SIZES = [
  { label: '300 B', bytes: 300, amount: quick ? 12_000 : 30_000 },
  { label: '64 KB', bytes: 65_536, amount: quick ? 1200 : 3000 },
].filter((size) => flag('--size') === undefined || size.label.startsWith(flag('--size')));
const ONLY = flag('--only');
const OTEL = process.argv.includes('--otel');
const SKIP_MICRO = process.argv.includes('--no-micro');
const CONNECTIONS = 16;
const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-c', '0', 'true']);
    return os.cpus().length >= 2;
  } catch {
    return false;
  }
})();

/** Starts a node script, pinned to a core when taskset exists, with an IPC channel. */
function start(script, args, core) {
  const file = fileURLToPath(new URL(script, import.meta.url));
  const child = hasTaskset
    ? spawn('taskset', ['-c', String(core), process.execPath, file, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    : fork(file, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ask = (message, until = () => true) =>
    new Promise((resolve, reject) => {
      const onExit = (code) => reject(new Error(`${script} ${args.join(' ')} exited (${code})`));
      const onMessage = (reply) => {
        if (!until(reply)) return;
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(reply);
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
      if (message !== undefined) child.send(message);
    });
  return { child, ask };
}

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
    await load.ask({ cmd: 'prepare', size: size.bytes, amount: size.amount, github: name.startsWith('@octokit') }, (m) => m.ready);
    const before = await server.ask('stats', (m) => m.cpuMicros !== undefined);
    const result = await load.ask({ cmd: 'go', url: `http://127.0.0.1:${server.port}/webhooks/mitpo`, connections: CONNECTIONS }, (m) => m.rps !== undefined);
    const after = await server.ask('stats', (m) => m.cpuMicros !== undefined);
    const handled = after.runs - before.runs;
    const expectRuns = name === 'bare node:http' ? 0 : result.ok;
    if (result.notOk > 0 || result.ok !== size.amount || handled !== expectRuns) {
      failures += 1;
      console.error(`FAILED ${name} ${size.label}: ${result.ok} 2xx, ${result.notOk} other, ${handled} handler runs`);
    }
    if (!record) return;
    const key = `${name}|${size.label}`;
    samples[key] ??= { rps: [], p50: [], p99: [], cpu: [], rss: 0 };
    samples[key].rps.push(result.rps);
    samples[key].p50.push(result.p50);
    samples[key].p99.push(result.p99);
    samples[key].cpu.push((after.cpuMicros - before.cpuMicros) / result.ok);
    samples[key].rss = Math.max(samples[key].rss, after.maxRss);
  };

  // Warm-up, unrecorded. --quick skips it to stay under a minute (every run lasts about a
  // second however short): its first round is then the cold one, which the median drops.
  if (!quick) {
    for (const size of SIZES) for (const name of scenarios) await runOnce(name, { ...size, amount: Math.ceil(size.amount / 4) }, false);
  }
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order each round, so no scenario always runs first or last.
    const order = scenarios.map((_, i) => scenarios[(i + round) % scenarios.length]);
    for (const size of SIZES) for (const name of order) await runOnce(name, size, true);
    process.stdout.write(`round ${round + 1}/${ROUNDS} done (${Math.round((Date.now() - started) / 1000)} s)\n`);
  }
  for (const { child } of [...Object.values(servers), load]) child.send('exit');

  const cpu = (name, label) => (samples[`${name}|${label}`] ? median(samples[`${name}|${label}`].cpu) : Number.NaN);
  const [, hand, ours, expressHand, oursExpress, octokit] = SCENARIOS;
  console.log('');
  for (const size of SIZES) {
    console.log(`${size.label} body (medians of ${ROUNDS} rounds × ${size.amount} requests)`);
    const header = ['scenario', 'req/s', 'p50 ms', 'p99 ms', 'peak RSS', 'CPU µs/req', '÷ (2)', '÷ (4)', '÷ (6)'];
    const rows = (OTEL ? OTEL_SCENARIOS : SCENARIOS).flatMap((name, i) => {
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
        (c / cpu(hand, size.label)).toFixed(2),
        (c / cpu(expressHand, size.label)).toFixed(2),
        (c / cpu(octokit, size.label)).toFixed(2),
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
    console.log('OpenTelemetry (ratios of medians in this run; the ÷ columns above compare with scenarios not run here)');
    for (const size of SIZES) {
      console.log(`  ${size.label}: API without SDK ÷ package absent ${(cpu(apiOnly, size.label) / cpu(absent, size.label)).toFixed(2)}; ` +
        `SDK with in-memory exporter ÷ package absent ${(cpu(sdk, size.label) / cpu(absent, size.label)).toFixed(2)}`);
    }
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

  // The budget (issue #11): a plain, auditable receiver, not a race.
  const budget = [
    ['CPU/req 300 B: (3) mitpo-webhooks on node:http ≤ 1.05 × (6) @octokit/webhooks', cpu(ours, '300 B') / cpu(octokit, '300 B'), 1.05],
    ['CPU/req 300 B: (5) mitpo-webhooks on Express ≤ 1.00 × (4) Express + express.raw() + hand-written', cpu(oursExpress, '300 B') / cpu(expressHand, '300 B'), 1.0],
  ];
  console.log('\nbudget (ratios of medians in this run)');
  for (const [label, ratio, limit] of budget) {
    if (!Number.isNaN(ratio)) console.log(`  ${ratio <= limit ? 'met   ' : 'MISSED'} ${label}: ${ratio.toFixed(2)}`);
  }
  console.log('for information');
  for (const [label, ratio] of [
    ['CPU/req 300 B: (3) ÷ (2) hand-written on node:http', cpu(ours, '300 B') / cpu(hand, '300 B')],
    ['CPU/req 64 KB: (3) ÷ (2) hand-written on node:http', cpu(ours, '64 KB') / cpu(hand, '64 KB')],
    ['CPU/req 64 KB: (3) ÷ (6) @octokit/webhooks', cpu(ours, '64 KB') / cpu(octokit, '64 KB')],
    ['CPU/req 64 KB: (5) ÷ (4) Express + express.raw() + hand-written', cpu(oursExpress, '64 KB') / cpu(expressHand, '64 KB')],
  ]) {
    if (!Number.isNaN(ratio)) console.log(`  ${label}: ${ratio.toFixed(2)}`);
  }
  if (failures > 0) {
    console.error(`\n${failures} runs had non-2xx answers or a handler count that differed from the 2xx count`);
    process.exit(1);
  }
  process.exit(0);
}

(process.argv.includes('--queue') ? import('./queue.mjs').then((m) => m.runQueueBench()) : main()).catch((error) => {
  console.error(error);
  process.exit(1);
});
