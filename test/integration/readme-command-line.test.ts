import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { API_KEY, startMitpoApiMock } from '../helpers/mitpo-api-mock';
import { runCli, startCli } from '../helpers/run-cli';

/** The `npx mitpo-webhooks ...` lines of the tour in docs/cli.md (the README's "Command line" block until it moved), as argument lists. */
function readmeCommands(): string[][] {
  const page = readFileSync(path.join(__dirname, '../../docs/cli.md'), 'utf8');
  const section = page.split('\n## A tour\n')[1]!.split('\n## ')[0]!;
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
  return block
    .split('\n')
    .filter((line) => line.startsWith('npx mitpo-webhooks '))
    .map((line) => [...line.slice('npx mitpo-webhooks '.length).matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!));
}

describe("docs/cli.md's tour of the command line", () => {
  it('runs, every line, against a live listener and a local MITPO API', async () => {
    const commands = readmeCommands();
    expect(commands.map((c) => c.slice(0, 2).join(' '))).toEqual([
      'listen --port',
      'send http://127.0.0.1:3000/webhooks/mitpo',
      'send http://127.0.0.1:3000/webhooks/mitpo',
      'sign --file',
      'endpoints create',
      'endpoints list',
      'endpoints delete',
    ]);
    const secret = 'whsec_a1b2c3d4e5';
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mitpo-readme-'));
    writeFileSync(path.join(dir, 'body.json'), '{"event":"connection.active","timestamp":"2026-03-22T10:30:00Z","data":{}}');
    const api = await startMitpoApiMock();
    const env = { MITPO_WEBHOOK_SECRET: secret, MITPO_API_KEY: API_KEY, MITPO_API_BASE_URL: api.baseUrl };

    // The listener takes a free port instead of 3000; the other lines are sent to it.
    const listenArgs = commands[0]!.map((arg, i, all) => (all[i - 1] === '--port' ? '0' : arg));
    const listener = startCli(listenArgs, /Listening on (http:\/\/\S+)/, env);
    try {
      const url = (await listener.started)[1]!;
      let createdId = '';
      for (const command of commands.slice(1)) {
        const args = command.map((arg) =>
          arg === 'http://127.0.0.1:3000/webhooks/mitpo' ? url : arg === 'whk_r3s4t5u6' ? createdId : arg,
        );
        const run = await runCli(args, { env, cwd: dir });
        expect({ args, code: run.code, stderr: run.stderr }).toEqual({ args, code: 0, stderr: '' });
        createdId = /Created endpoint (whk_\w+)/.exec(run.stdout)?.[1] ?? createdId;
      }
      expect(readFileSync(path.join(dir, '.env'), 'utf8')).toMatch(/^MITPO_WEBHOOK_SECRET=whsec_/);
      expect(api.endpoints.size).toBe(0);
    } finally {
      await listener.stop();
      await api.close();
    }
    expect(listener.output().match(/200 accepted/g)).toHaveLength(2);
  });
});
