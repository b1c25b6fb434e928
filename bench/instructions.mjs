// `npm run bench -- --instructions`: instructions per delivery, counted by
// valgrind's callgrind. A count does not move with the host's load or its idle
// states, as the CPU time of the main table does (runs on this kind of virtual
// machine differ by ±0.1 in a ratio), so a change can be judged by one run of
// it. It counts work, not time: the budget stays the main table's CPU time.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { start } from './child-process.mjs';
import { SCENARIOS } from './server.mjs';

const WARM_UP = 10_000;
const COUNTED = 3000;
const CONNECTIONS = 16;

/**
 * Runs `name` from server.mjs under callgrind, sends WARM_UP deliveries so V8
 * has optimised the path, zeroes the counters, sends COUNTED more and dumps.
 * Returns instructions per delivery on the main thread, the event loop's. The
 * other threads are left out: under valgrind everything runs some 50 times
 * slower, so V8's compiler threads are still busy in the counted window, where
 * in a real run they are idle after the warm-up (`--trace-opt` there showed
 * about 60 compilations in 90 000 deliveries).
 */
async function count(name, load, { forged = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mitpo-callgrind-'));
  const receiver = spawn(
    'valgrind',
    ['--tool=callgrind', '--separate-threads=yes', '--smc-check=all-non-file', `--callgrind-out-file=${dir}/out`, process.execPath,
      fileURLToPath(new URL('./server.mjs', import.meta.url)), name],
    { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] },
  );
  let stderr = '';
  receiver.stderr.on('data', (chunk) => (stderr = (stderr + chunk).slice(-2000)));
  const exited = new Promise((resolve) => receiver.once('exit', resolve));
  const counting = { receiver, exited, dir };
  underWay.add(counting);
  try {
    const port = await new Promise((resolve, reject) => {
      exited.then((code) => reject(new Error(`${name} under valgrind exited (${code}):\n${stderr}`)));
      receiver.on('message', (message) => message.port && resolve(message.port));
    });
    const send = async (amount) => {
      await load.ask({ cmd: 'prepare', size: 300, amount, github: name.startsWith('@octokit'), forged }, (m) => m.ready);
      const result = await load.ask({ cmd: 'go', url: `http://127.0.0.1:${port}/webhooks/mitpo`, connections: CONNECTIONS }, (m) => m.rps !== undefined);
      const answered = forged ? result.refused : result.ok;
      if (answered !== amount) throw new Error(`${name}: ${result.ok} 2xx and ${result.refused} refused of ${amount}`);
    };
    await send(WARM_UP);
    execFileSync('callgrind_control', ['--zero', String(receiver.pid)], { stdio: 'ignore' });
    await send(COUNTED);
    execFileSync('callgrind_control', ['--dump=counted', String(receiver.pid)], { stdio: 'ignore' });
    // One file per thread for this dump; thread 01 is the main thread.
    const main = fs.readdirSync(dir).find((file) => /-01$/.test(file));
    const text = main === undefined ? '' : fs.readFileSync(path.join(dir, main), 'utf8');
    const total = /^desc: Trigger: .*counted/m.test(text) ? Number(/^(?:summary|totals): (\d+)/m.exec(text)?.[1]) : Number.NaN;
    if (!(total > 0)) throw new Error(`${name}: callgrind wrote no count for the main thread`);
    return total / COUNTED;
  } finally {
    await stop(counting);
  }
}

/**
 * Ends a receiver under valgrind and removes its directory. SIGTERM, not
 * SIGKILL: valgrind then removes the pipes it made for callgrind_control, and
 * writes its last dump into `dir` before exiting, so `dir` goes after that.
 */
async function stop(counting) {
  counting.receiver.kill('SIGTERM');
  await counting.exited;
  fs.rmSync(counting.dir, { recursive: true, force: true, maxRetries: 3 });
  underWay.delete(counting);
}

/**
 * The receiver under valgrind being counted, and its callgrind directory. A
 * signal ends this process before `count`'s `finally` runs, so the receiver is
 * stopped here too (Ctrl-C reaches it anyway, a `kill` of this process alone
 * does not), or it and its directory would stay behind.
 */
const underWay = new Set();
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await Promise.all([...underWay].map(stop));
    process.exit(128 + os.constants.signals[signal]);
  });
}

/** The scenarios `only` names (by their number in the main table), or those of the budget, counted one after another. */
export async function runInstructionsBench({ only } = {}) {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  } catch {
    console.error('--instructions needs valgrind (Debian: apt-get install valgrind)');
    process.exit(1);
  }
  const numbers = only ?? [3, 4, 5, 6, 7, 9, 10];
  if (numbers.some((n) => SCENARIOS[n - 1] === undefined)) {
    console.error(`--only takes scenario numbers from 1 to ${SCENARIOS.length}, e.g. --only 4,5`);
    process.exit(2);
  }
  console.log(`mitpo-webhooks benchmark, instructions per delivery (callgrind): node ${process.version}`);
  console.log(`300 B, ${CONNECTIONS} connections; ${WARM_UP} deliveries to warm up, then ${COUNTED} counted; one to four minutes a scenario`);
  console.log('instructions per delivery on the main thread:\n');
  const load = start('./load.mjs', [], 1);
  await load.ask(undefined, (m) => m.started);
  const counts = {};
  const runs = [...numbers.map((n) => [n, false]), ...(numbers.includes(4) && numbers.includes(5) ? [[4, true], [5, true]] : [])];
  for (const [n, forged] of runs) {
    const key = forged ? `${n} forged` : String(n);
    counts[key] = await count(SCENARIOS[n - 1], load, { forged });
    console.log(`(${n}) ${SCENARIOS[n - 1]}${forged ? ', forged' : ''}`.padEnd(58) + Math.round(counts[key]).toLocaleString('en').padStart(9));
  }
  load.child.send('exit');
  const ratio = (a, b) => (counts[a] && counts[b] ? (counts[a] / counts[b]).toFixed(2) : undefined);
  console.log('\nratios in this run, beside the budget (which is CPU time, in the main table)');
  for (const [label, value] of [
    ['(4) ÷ (5) @octokit/webhooks on node:http (budget 1.10)', ratio('4', '5')],
    ['(7) ÷ (6) Express 5 + express.raw() + hand-written (budget 0.95)', ratio('7', '6')],
    ['(10) ÷ (9) Fastify 5 hand-written + Map replay check (budget 1.30)', ratio('10', '9')],
    ['forged 300 B: (4) ÷ (5) (budget 1.00)', ratio('4 forged', '5 forged')],
    ['(4) ÷ (3) hand-written on node:http + Map replay check', ratio('4', '3')],
  ]) {
    if (value !== undefined) console.log(`  ${label}: ${value}`);
  }
  process.exit(0);
}
