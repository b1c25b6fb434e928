// `npm run bench -- --queue`: MITPO's view of inline versus queued processing.
// For a handler that takes 0 ms and one that takes 2 s: the answer's latency
// (p50/p99, what MITPO waits) and the receiver's CPU per request, inline with a
// RedisReplayStore and queued on BullMQ (the enqueue), medians of a few rounds.
import { median, start } from './child-process.mjs';
import { Queue } from 'bullmq';

const ROUNDS = 3;
const CONNECTIONS = 16;
const SCENARIOS = [
  { label: 'inline + RedisReplayStore, handler 0 ms', mode: 'inline', handlerMs: 0, amount: 3000 },
  { label: 'queued on BullMQ,          handler 0 ms', mode: 'queued', handlerMs: 0, amount: 3000 },
  { label: 'inline + RedisReplayStore, handler 2 s', mode: 'inline', handlerMs: 2000, amount: 64 },
  { label: 'queued on BullMQ,          handler 2 s', mode: 'queued', handlerMs: 2000, amount: 64 },
];



export async function runQueueBench() {
  if (!process.env.REDIS_URL) {
    console.error('npm run bench -- --queue needs a Redis: REDIS_URL=redis://127.0.0.1:6379 npm run bench -- --queue');
    process.exit(2);
  }
  process.env.BENCH_RUN = String(Date.now());
  console.log(`inline vs queued: ${ROUNDS} rounds, ${CONNECTIONS} connections, 300 B bodies, Redis at ${process.env.REDIS_URL}\n`);
  const load = start('./load.mjs', []);
  await load.ask(undefined, (m) => m.started);
  const receivers = [];
  for (const scenario of SCENARIOS) {
    const receiver = start('./queue-receiver.mjs', [scenario.mode, String(scenario.handlerMs)]);
    receivers.push({ ...receiver, port: (await receiver.ask(undefined, (m) => m.port)).port });
  }
  const samples = SCENARIOS.map(() => ({ p50: [], p99: [], cpu: [] }));
  let failures = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, scenario] of SCENARIOS.entries()) {
      const receiver = receivers[i];
      await load.ask({ cmd: 'prepare', size: 300, amount: scenario.amount }, (m) => m.ready);
      const before = await receiver.ask('stats', (m) => m.cpuMicros !== undefined);
      const result = await load.ask({ cmd: 'go', url: `http://127.0.0.1:${receiver.port}/webhooks/mitpo`, connections: CONNECTIONS }, (m) => m.rps !== undefined);
      const after = await receiver.ask('stats', (m) => m.cpuMicros !== undefined);
      if (result.notOk > 0 || result.ok !== scenario.amount) {
        failures += 1;
        console.error(`FAILED ${scenario.label}: ${result.ok} 2xx, ${result.notOk} other`);
      }
      samples[i].p50.push(result.p50);
      samples[i].p99.push(result.p99);
      samples[i].cpu.push((after.cpuMicros - before.cpuMicros) / Math.max(1, result.ok));
    }
    console.log(`round ${round + 1}/${ROUNDS} done`);
  }
  for (const { child } of [...receivers, load]) child.send('exit');
  for (const handlerMs of new Set(SCENARIOS.map((s) => s.handlerMs))) {
    const queue = new Queue(`mitpo-bench-${process.env.BENCH_RUN}-${handlerMs}`, { connection: { url: process.env.REDIS_URL } });
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  }
  console.log('\nscenario                                   answer p50 ms  answer p99 ms  receiver CPU µs/req');
  for (const [i, scenario] of SCENARIOS.entries()) {
    const s = samples[i];
    console.log(`${scenario.label.padEnd(42)} ${String(median(s.p50)).padStart(13)}  ${String(median(s.p99)).padStart(13)}  ${median(s.cpu).toFixed(1).padStart(19)}`);
  }
  const cpu = (i) => median(samples[i].cpu);
  console.log(`\nreceiver CPU for the enqueue ÷ inline + RedisReplayStore (handler 0 ms): ${(cpu(1) / cpu(0)).toFixed(2)}`);
  process.exit(failures > 0 ? 1 : 0);
}
