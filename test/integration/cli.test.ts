import { chmodSync, lstatSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { MitpoWebhooks, MITPO_EVENT_NAMES, verifySignature } from '../../src';
import { send as post } from '../helpers/http-client';
import { API_KEY, startMitpoApiMock } from '../helpers/mitpo-api-mock';
import { runCli, startCli } from '../helpers/run-cli';
import { listen, type RunningServer } from '../helpers/servers';

const SECRET = 'whsec_cli_tests_0123';
// C0 controls, DEL and C1 controls: none may reach the terminal from a server.
// eslint-disable-next-line no-control-regex -- these characters are what the tests look for
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

async function liveReceiver() {
  const handled: string[] = [];
  const ids: unknown[] = [];
  const webhooks = new MitpoWebhooks({ secret: SECRET });
  webhooks.onAny((event) => {
    handled.push(event.event);
    ids.push((event.data as { dispatch_id?: unknown }).dispatch_id);
  });
  const server = await listen(http.createServer((req, res) => webhooks.middleware()(req, res, () => res.end())));
  return { server, handled, ids };
}

/** A server that answers every request with `answer`, counting the requests. */
async function fixedServer(answer: (res: http.ServerResponse) => void) {
  let requests = 0;
  const server = await listen(
    http.createServer((req, res) => {
      requests++;
      req.resume();
      req.on('end', () => answer(res));
    }),
  );
  return { server, requests: () => requests };
}

describe('mitpo-webhooks send', () => {
  let receiver: { server: RunningServer; handled: string[]; ids: unknown[] };
  beforeEach(async () => {
    receiver = await liveReceiver();
  });
  afterEach(() => receiver.server.close());

  it.each(MITPO_EVENT_NAMES)('signs and delivers a sample %s that the receiver handles', async (event) => {
    const run = await runCli(['send', receiver.server.url, '--event', event, '--secret', SECRET]);
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^→ POST ${receiver.server.url} \\(${event.replace('.', '\\.')}, \\d+ bytes\\)$`));
    expect(lines.slice(1)).toEqual(['← 200 OK', '{"success":true}']);
    expect(receiver.handled).toEqual([event]);
  });

  it('sends a fresh sample each run: two runs in a row are both handled, neither a duplicate', async () => {
    const first = await runCli(['send', receiver.server.url, '--event', 'dispatch.completed', '--secret', SECRET]);
    const second = await runCli(['send', receiver.server.url, '--event', 'dispatch.completed', '--secret', SECRET]);
    expect([first.code, second.code]).toEqual([0, 0]);
    expect(first.stdout.trimEnd().split('\n').slice(1)).toEqual(['← 200 OK', '{"success":true}']);
    expect(second.stdout.trimEnd().split('\n').slice(1)).toEqual(['← 200 OK', '{"success":true}']);
    expect(receiver.handled).toEqual(['dispatch.completed', 'dispatch.completed']);
    expect(receiver.ids).toEqual([expect.stringMatching(/^dsp_[0-9a-f]{16}$/), expect.stringMatching(/^dsp_[0-9a-f]{16}$/)]);
    expect(receiver.ids[0]).not.toBe(receiver.ids[1]);
  });

  it('prints the status and the answer’s body without control characters, cutting a huge one, and exits 1 on non-2xx', async () => {
    const hostile = await fixedServer((res) =>
      res.writeHead(500, { 'content-type': 'application/json' }).end('{"success":false,"error":{"code":"x\u001b[2J","message":"a\nb\u009b1m"}}\n'),
    );
    const huge = await fixedServer((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 'y');
      let left = 48; // 3 MiB
      const pump = () => {
        while (left > 0) {
          left--;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    const empty = await fixedServer((res) => res.writeHead(202).end());
    try {
      const refused = await runCli(['send', hostile.server.url, '--event', 'dispatch.completed', '--secret', SECRET]);
      expect(refused.code).toBe(1);
      expect(refused.stdout.split('\n').slice(1)).toEqual(['← 500 Internal Server Error', '{"success":false,"error":{"code":"x[2J","message":"ab1m"}}', '']);
      expect(refused.stdout).not.toMatch(CONTROL);

      const big = await runCli(['send', huge.server.url, '--event', 'dispatch.completed', '--secret', SECRET]);
      expect(big.code).toBe(0);
      const lines = big.stdout.trimEnd().split('\n');
      expect(lines[1]).toBe('← 200 OK');
      expect(lines[2]).toBe(`${'y'.repeat(4096)}…`);
      expect(lines).toHaveLength(3);

      const nothing = await runCli(['send', empty.server.url, '--event', 'dispatch.completed', '--secret', SECRET]);
      expect(nothing.code).toBe(0);
      expect(nothing.stdout.trimEnd().split('\n').slice(1)).toEqual(['← 202 Accepted', '(empty body)']);
    } finally {
      await Promise.all([hostile.server.close(), huge.server.close(), empty.server.close()]);
    }
  });

  it('does not follow a redirect: the 3xx is the answer, exit 1, and the other server gets nothing', async () => {
    const elsewhere = await fixedServer((res) => res.writeHead(200).end('{"success":true}'));
    const redirecting = await fixedServer((res) => res.writeHead(307, { location: elsewhere.server.url }).end());
    try {
      const run = await runCli(['send', redirecting.server.url, '--event', 'dispatch.completed', '--secret', SECRET]);
      expect(run.code).toBe(1);
      expect(run.stdout.trimEnd().split('\n').slice(1)).toEqual(['← 307 Temporary Redirect', '(empty body)']);
      expect(elsewhere.requests()).toBe(0);
    } finally {
      await Promise.all([elsewhere.server.close(), redirecting.server.close()]);
    }
  });

  it('takes the secret from MITPO_WEBHOOK_SECRET and the data from --data or --file', async () => {
    const run = await runCli(['send', receiver.server.url, '--event', 'dispatch.accepted', '--data', '{"dispatch_id":"d","channel":"c","status":"accepted"}'], {
      env: { MITPO_WEBHOOK_SECRET: SECRET },
    });
    expect(run.code).toBe(0);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mitpo-cli-'));
    writeFileSync(path.join(dir, 'data.json'), '{"connection_id":"con_9"}');
    const fromFile = await runCli(['send', receiver.server.url, '--event', 'connection.active', '--file', path.join(dir, 'data.json'), '--secret', SECRET]);
    expect(fromFile.code).toBe(0);
    expect(receiver.handled).toEqual(['dispatch.accepted', 'connection.active']);
  });

  it('exits 1 and prints the status and the JSON answer when the receiver refuses (a wrong secret)', async () => {
    const run = await runCli(['send', receiver.server.url, '--event', 'dispatch.completed', '--secret', 'whsec_wrong_one']);
    expect(run.code).toBe(1);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[1]).toBe('← 401 Unauthorized');
    expect(JSON.parse(lines[2]!)).toEqual({ success: false, error: { code: 'invalid_signature', message: expect.any(String) } });
    expect(receiver.handled).toEqual([]);
  });

  it.each(['http://[::1', 'http://a b/'])('exits 2 on a URL that is not one: %j', async (url) => {
    const run = await runCli(['send', url, '--event', 'dispatch.completed', '--secret', SECRET]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('is not a URL');
  });

  it('exits 1 when nothing answers', async () => {
    const url = receiver.server.url;
    await receiver.server.close();
    const run = await runCli(['send', url, '--event', 'dispatch.completed', '--secret', SECRET]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('no answer from');
    receiver.server.close = async () => {};
  });

  it.each([
    [['send'], /needs the receiver URL/],
    [['send', 'http://127.0.0.1:1/x'], /needs --event/],
    [['send', 'ftp://x', '--event', 'dispatch.completed'], /must start with http/],
    [['send', 'http://127.0.0.1:1/x', '--event', 'dispatch.completed'], /no signing secret/],
    [['send', 'http://127.0.0.1:1/x', '--event', 'dispatch.completed', '--secret', ' whsec_x'], /whitespace/],
    [['send', 'http://127.0.0.1:1/x', '--event', 'dispatch\ncompleted', '--secret', SECRET], /--event contains characters that cannot be printed as they are/],
    // Not a control character, yet it would make two event names that look alike differ.
    [['send', 'http://127.0.0.1:1/x', '--event', 'dispatch.\u200bcompleted', '--secret', SECRET], /--event contains characters that cannot be printed as they are \(control, bidirectional, zero-width/],
    // It was sent, and the header's failure reported as "no answer from" the receiver.
    [['send', 'http://127.0.0.1:1/x', '--event', 'dispatch.\u{1F600}', '--secret', SECRET], /--event cannot be sent as the X-MITPO-Event header: it has a character above U\+00FF/],
    [['send', 'http://127.0.0.1:1/x', '--event', 'dispatch.completed', '--secret', SECRET, '--data', '{nope'], /--data is not valid JSON/],
    [['send', 'http://127.0.0.1:1/x', '--event', 'dispatch.completed', '--secret', SECRET, '--data', '[]'], /must be a JSON object/],
    [['send', 'http://127.0.0.1:1/x', '--event', 'x', '--secret', SECRET, '--data', '{}', '--file', 'f'], /not both/],
    [['send', '--colour'], /Unknown option '--colour'/],
    [['bogus'], /unknown command "bogus"/],
  ])('exits 2 with the usage on bad arguments: %j', async (args, message) => {
    const run = await runCli(args);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(run.stderr).toContain('Usage: mitpo-webhooks');
  });
});

describe('a quoted secret or the bare whsec_ prefix', () => {
  const QUOTED = 'whsec_quoted_9f8e7d';
  it.each([
    ['send', '--secret', `"${QUOTED}"`, /the signing secret is wrapped in quotes/],
    ['send', '--secret', `'${QUOTED}'`, /the signing secret is wrapped in quotes/],
    ['send', 'env', `"${QUOTED}"`, /the signing secret is wrapped in quotes/],
    ['send', '--secret', 'whsec_', /the signing secret is only the "whsec_" prefix/],
    ['sign', '--secret', `"${QUOTED}"`, /the signing secret is wrapped in quotes/],
    ['sign', 'env', 'whsec_', /the signing secret is only the "whsec_" prefix/],
    ['listen', '--secret', `"${QUOTED}"`, /the signing secret is wrapped in quotes/],
  ])('%s refuses it (%s %s) with exit 2, never echoing it', async (command, source, secret, message) => {
    const args =
      command === 'send' ? ['send', 'http://127.0.0.1:1/x', '--event', 'dispatch.completed'] : command === 'sign' ? ['sign'] : ['listen', '--port', '0'];
    const run = await runCli(source === 'env' ? args : [...args, '--secret', secret], {
      env: source === 'env' ? { MITPO_WEBHOOK_SECRET: secret } : {},
      input: '{"event":"connection.active","timestamp":"2026-03-22T10:30:00Z","data":{}}',
    });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(new RegExp(`^mitpo-webhooks ${command}: ${message.source}`));
    expect(run.stderr).not.toContain(QUOTED);
    expect(run.stdout).toBe('');
  });
});

describe('mitpo-webhooks sign', () => {
  const body = '{"event":"dispatch.completed","timestamp":"2026-03-22T10:30:00Z","data":{"dispatch_id":"dsp_ü","channel":"c","status":"s"}}';

  it('prints Content-Type and the X-MITPO-* headers for a body on stdin, as Name: value lines verifySignature accepts', async () => {
    const run = await runCli(['sign', '--secret', SECRET, '--sent-at', '1774175400'], { input: body });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Content-Type: application\/json\nX-MITPO-Signature: sha256=[0-9a-f]{64}\nX-MITPO-Timestamp: 1774175400\nX-MITPO-Event: dispatch\.completed\n$/);
    const headers = Object.fromEntries(run.stdout.trim().split('\n').map((line) => line.split(': ') as [string, string]));
    expect(Object.keys(headers)).toEqual(['Content-Type', 'X-MITPO-Signature', 'X-MITPO-Timestamp', 'X-MITPO-Event']);
    expect(headers['Content-Type']).toBe('application/json');
    expect(verifySignature(Buffer.from(body), headers['X-MITPO-Signature'], SECRET)).toBe(true);
    expect(headers['X-MITPO-Timestamp']).toBe('1774175400');
    expect(headers['X-MITPO-Event']).toBe('dispatch.completed');
  });

  it('signs a --file byte for byte', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mitpo-cli-'));
    const file = path.join(dir, 'body.json');
    writeFileSync(file, `${body}\n`);
    const run = await runCli(['sign', '--file', file], { env: { MITPO_WEBHOOK_SECRET: SECRET } });
    expect(run.code).toBe(0);
    const signature = /X-MITPO-Signature: (\S+)/.exec(run.stdout)![1];
    expect(verifySignature(readFileSync(file), signature, SECRET)).toBe(true);
    expect(verifySignature(body, signature, SECRET)).toBe(false);
  });

  it('signs an event of a type it does not know when its envelope is valid', async () => {
    const run = await runCli(['sign', '--secret', SECRET], { input: '{"event":"dispatch.cancelled","timestamp":"2026-03-22T10:30:00Z","data":{}}' });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('\nX-MITPO-Event: dispatch.cancelled\n');
  });

  const TS = '"timestamp":"2026-03-22T10:30:00Z"';
  it.each([
    ['not JSON', 'not json', /^mitpo-webhooks sign: the body is not a MITPO event: it is not valid JSON\n$/],
    ['not UTF-8', Buffer.from(`{"event":"connection.active",${TS},"data":{"n":"\xff"}}`, 'latin1'), /^mitpo-webhooks sign: the body is not a MITPO event: it is not UTF-8\n$/],
    ['a JSON array', '[]', /^mitpo-webhooks sign: the body is not a MITPO event: Event payload does not match the MITPO event envelope: /],
    ['no event', `{${TS},"data":{}}`, /^mitpo-webhooks sign: the body is not a MITPO event: Event payload does not match the MITPO event envelope: event: /],
    ['no data', `{"event":"dispatch.cancelled",${TS}}`, /^mitpo-webhooks sign: the body is not a MITPO event: Event payload does not match the "dispatch\.cancelled" event schema: data: /],
    ['data that is not an object', `{"event":"connection.active",${TS},"data":[]}`, /event schema: data: /],
    ['a bad timestamp', '{"event":"dispatch.cancelled","timestamp":"yesterday","data":{}}', /event schema: timestamp: /],
    ['a numeric timestamp', '{"event":"connection.active","timestamp":1774175400,"data":{}}', /event schema: timestamp: /],
    ['a known type missing a required field', `{"event":"dispatch.completed",${TS},"data":{"channel":"c","status":"s"}}`, /"dispatch\.completed" event schema: data\.dispatch_id: /],
    ['an event name with a newline', `{"event":"dispatch.x\\nX-Evil: 1",${TS},"data":{}}`, /^mitpo-webhooks sign: the body is not a MITPO event: its "event" contains characters that cannot be printed as they are \(control, /],
    ['an event name with half of a UTF-16 pair', `{"event":"dispatch.\\ud800done",${TS},"data":{}}`, /^mitpo-webhooks sign: the body is not a MITPO event: its "event" contains characters that cannot be printed as they are \(control, /],
    // Sent as UTF-8 by curl, read as Latin-1 by Node: event_mismatch at every receiver.
    ['an event name outside ASCII', `{"event":"dispatch.\u5b8c\u6210",${TS},"data":{}}`, /^mitpo-webhooks sign: the body is not a MITPO event: its "event" has characters outside ASCII, which the X-MITPO-Event header cannot carry as sent/],
  ])('exits 1 on a body that is not a MITPO event (%s), printing no headers', async (_name, input, message) => {
    const run = await runCli(['sign', '--secret', SECRET], { input });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(message);
    expect(run.stdout).toBe('');
  });

  it('strips control characters from the body’s event name when it quotes it', async () => {
    const run = await runCli(['sign', '--secret', SECRET], { input: '{"event":"x\\u001b[2J\\u009b1m","timestamp":"now","data":{}}' });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^mitpo-webhooks sign: the body is not a MITPO event: Event payload does not match the "x\[2J1m" event schema: timestamp: /);
    expect(run.stderr.trimEnd()).not.toMatch(CONTROL);
  });

  it('exits 2 on a missing file', async () => {
    const missing = await runCli(['sign', '--secret', SECRET, '--file', '/nonexistent/body.json']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('ENOENT');
  });
});

describe('mitpo-webhooks listen', () => {
  it('verifies and prints a delivery sent by send, and a refused one with its code and reason', async () => {
    const listener = startCli(['listen', '--port', '0', '--secret', SECRET], /Listening on (http:\/\/\S+)/);
    try {
      const url = (await listener.started)[1]!;
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/webhooks\/mitpo$/);
      expect((await runCli(['send', url, '--event', 'dispatch.completed', '--secret', SECRET])).code).toBe(0);
      expect((await runCli(['send', url, '--event', 'dispatch.failed', '--secret', 'whsec_not_it'])).code).toBe(1);
      const notFound = await post(url.replace('/webhooks/mitpo', '/elsewhere'), { method: 'GET' });
      expect(notFound.status).toBe(404);
    } finally {
      expect(await listener.stop()).toBe(0);
    }
    const lines = listener.output().trim().split('\n');
    expect(lines[1]).toMatch(/200 accepted {2}dispatch\.completed at \S+ {2}dispatch_id=dsp_[0-9a-f]{16} channel=meta_ads status=completed/);
    expect(lines[2]).toMatch(/401 refused {3}invalid_signature: X-MITPO-Signature does not match/);
  });

  it('exits 2 on a bad port', async () => {
    const run = await runCli(['listen', '--port', 'eighty', '--secret', SECRET]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--port must be a port number');
  });

  // Found in a hunt: an address it cannot listen on was an "unexpected error" with Node's stack trace.
  it('exits 1 with one line naming the address when it cannot listen there (a port in use)', async () => {
    const taken = await listen(http.createServer());
    try {
      const port = new URL(taken.url).port;
      const run = await runCli(['listen', '--port', port, '--secret', SECRET]);
      expect(run.code).toBe(1);
      expect(run.stderr.trim()).toBe(`mitpo-webhooks listen: cannot listen on 127.0.0.1:${port} (EADDRINUSE)`);
    } finally {
      await taken.close();
    }
  });
});

describe('mitpo-webhooks listen, printing what a sender wrote', () => {
  // Found in review: the event's text reached the terminal raw, escape sequences and all.
  it('strips control, bidirectional and zero-width characters from the event it prints', async () => {
    const listener = startCli(['listen', '--port', '0', '--secret', SECRET], /Listening on (http:\/\/\S+)/);
    try {
      const url = (await listener.started)[1]!;
      const data = JSON.stringify({ dispatch_id: 'dsp_1\u001b[2J\u001b]0;pwned\u0007\n10:00:00  401 refused', channel: 'meta\u202eads', status: 'completed' });
      expect((await runCli(['send', url, '--event', 'dispatch.completed', '--data', data, '--secret', SECRET])).code).toBe(0);
    } finally {
      expect(await listener.stop()).toBe(0);
    }
    const lines = listener.output().trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/200 accepted {2}dispatch\.completed at \S+ {2}dispatch_id=dsp_1\[2J\]0;pwned10:00:00 {2}401 refused channel=metaads status=completed$/);
  });

  // Found in a hunt: the path of a request it does not serve was printed whole, however long.
  it('cuts short the path of a request it does not serve', async () => {
    const listener = startCli(['listen', '--port', '0', '--secret', SECRET], /Listening on (http:\/\/\S+)/);
    try {
      const url = (await listener.started)[1]!;
      expect((await post(url.replace('/webhooks/mitpo', `/${'a'.repeat(5000)}`), { method: 'GET' })).status).toBe(404);
    } finally {
      expect(await listener.stop()).toBe(0);
    }
    const lines = listener.output().trim().split('\n');
    expect(lines[1]).toMatch(/ 404 GET \/a+…$/);
    expect(lines[1]!.length).toBeLessThan(300);
  });
});

describe('a reader that goes away (… | head)', () => {
  // Found in review: the EPIPE on stdout went unhandled and crashed the command with a stack trace.
  it('send: drops the rest of its output quietly and still exits with the answer’s code', async () => {
    const receiver = await liveReceiver();
    try {
      const run = await runCli(['send', receiver.server.url, '--event', 'dispatch.completed', '--secret', SECRET], { stdoutClosed: true });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(receiver.handled).toEqual(['dispatch.completed']);
    } finally {
      await receiver.server.close();
    }
  });

  it('send: exits 1 on a non-2xx answer all the same', async () => {
    const refusing = await fixedServer((res) => res.writeHead(500, { 'content-type': 'application/json' }).end('{"success":false}'));
    try {
      const run = await runCli(['send', refusing.server.url, '--event', 'dispatch.completed', '--secret', SECRET], { stdoutClosed: true });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(1);
      expect(refusing.requests()).toBe(1);
    } finally {
      await refusing.server.close();
    }
  });

  it('keeps the exit code of bad arguments (2) when the reader of its errors has gone (2>&1 | head)', async () => {
    const run = await runCli(['send', '--no-such-option'], { stderrClosed: true });
    expect(run.code).toBe(2);
  });

  it('listen: stops as on Ctrl-C, exit 0, at the first delivery after its reader has gone', async () => {
    const listener = startCli(['listen', '--port', '0', '--secret', SECRET], /Listening on (http:\/\/\S+)/);
    try {
      const url = (await listener.started)[1]!;
      listener.closeOutput();
      expect((await runCli(['send', url, '--event', 'dispatch.completed', '--secret', SECRET])).code).toBe(0);
      expect(await listener.exited).toBe(0);
      expect(listener.errors()).toBe('');
    } finally {
      await listener.stop();
    }
  });
});

describe('mitpo-webhooks endpoints', () => {
  let api: Awaited<ReturnType<typeof startMitpoApiMock>>;
  let closedBaseUrl: string;
  const env = () => ({ MITPO_API_KEY: API_KEY, MITPO_API_BASE_URL: api.baseUrl });
  beforeAll(async () => {
    // A port that was just free and is now closed: connecting to it is refused.
    const closed = await startMitpoApiMock();
    closedBaseUrl = closed.baseUrl;
    await closed.close();
  });
  beforeEach(async () => {
    api = await startMitpoApiMock();
  });
  afterEach(() => api.close());

  function expectNoKey(run: { stdout: string; stderr: string }) {
    expect(run.stdout).not.toContain(API_KEY);
    expect(run.stderr).not.toContain(API_KEY);
  }

  it('creates, lists and deletes endpoints through MITPO’s API with the key as Bearer token', async () => {
    const created = await runCli(['endpoints', 'create', '--url', 'https://example.com/webhooks/mitpo', '--events', 'dispatch.completed,dispatch.failed'], { env: env() });
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/Created endpoint (whk_\w+) for https:\/\/example\.com\/webhooks\/mitpo/);
    expect(created.stdout).toMatch(/Signing secret \(MITPO shows it only now\): whsec_whk_\w+_secret/);
    expect(api.requests[0]).toMatchObject({
      method: 'POST',
      url: '/v1/webhooks',
      authorization: `Bearer ${API_KEY}`,
      body: { url: 'https://example.com/webhooks/mitpo', events: ['dispatch.completed', 'dispatch.failed'] },
    });
    const id = /Created endpoint (whk_\w+)/.exec(created.stdout)![1]!;

    const listed = await runCli(['endpoints', 'list'], { env: env() });
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(`${id}  https://example.com/webhooks/mitpo  [dispatch.completed, dispatch.failed]  created 2026-03-22T10:00:00Z`);
    expect(listed.stdout).not.toContain('whsec_');

    const deleted = await runCli(['endpoints', 'delete', id], { env: env() });
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toContain(`Deleted endpoint ${id}`);
    expect(api.endpoints.size).toBe(0);
    expect((await runCli(['endpoints', 'list'], { env: env() })).stdout).toContain('No webhook endpoints registered.');
    for (const run of [created, listed, deleted]) expectNoKey(run);
  });

  it('writes the signing secret to an env file with --write-env, keeping its other lines, readable by the owner only', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mitpo-cli-'));
    const file = path.join(dir, '.env');
    writeFileSync(file, 'PORT=3000\nMITPO_WEBHOOK_SECRET=whsec_old\n');
    const run = await runCli(['endpoints', 'create', '--url', 'https://example.com/h', '--events', 'connection.active', '--write-env', file], { env: env() });
    expect(run.code).toBe(0);
    expect(readFileSync(file, 'utf8')).toMatch(/^PORT=3000\nMITPO_WEBHOOK_SECRET=whsec_whk_\w+_secret\n$/);
    const fresh = path.join(dir, 'new.env');
    await runCli(['endpoints', 'create', '--url', 'https://example.com/h', '--events', 'connection.active', '--write-env', fresh], { env: env() });
    expect(statSync(fresh).mode & 0o777).toBe(0o600);
  });

  // Found by a hunt: only the first line was replaced, so the old secret, read last, won (every delivery 401).
  it('replaces every MITPO_WEBHOOK_SECRET line of an env file, and keeps its other lines byte for byte, UTF-8 or not', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mitpo-cli-'));
    const file = path.join(dir, '.env');
    const latin1Line = Buffer.from('PASSWORD=caf\xe9', 'latin1');
    writeFileSync(file, Buffer.concat([Buffer.from('PORT=3000\nMITPO_WEBHOOK_SECRET=whsec_old1\n'), latin1Line, Buffer.from('\nMITPO_WEBHOOK_SECRET=whsec_old2\n')]));
    const run = await runCli(['endpoints', 'create', '--url', 'https://example.com/h', '--events', 'connection.active', '--write-env', file], { env: env() });
    expect(run.code).toBe(0);
    const secret = /Signing secret \(MITPO shows it only now\): (\S+)/.exec(run.stdout)![1]!;
    expect(readFileSync(file)).toEqual(Buffer.concat([Buffer.from(`PORT=3000\nMITPO_WEBHOOK_SECRET=${secret}\n`), latin1Line, Buffer.from('\n')]));
  });

  it('replaces an assignment written with export or spaces, and keeps CRLF line ends', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mitpo-cli-'));
    const file = path.join(dir, '.env');
    writeFileSync(file, 'PORT=3000\r\nexport MITPO_WEBHOOK_SECRET=whsec_old1\r\nB=2\r\n  MITPO_WEBHOOK_SECRET = whsec_old2\r\n\r\n');
    const run = await runCli(['endpoints', 'create', '--url', 'https://example.com/h', '--events', 'connection.active', '--write-env', file], { env: env() });
    expect(run.code).toBe(0);
    const secret = /Signing secret \(MITPO shows it only now\): (\S+)/.exec(run.stdout)![1]!;
    expect(readFileSync(file, 'utf8')).toBe(`PORT=3000\r\nMITPO_WEBHOOK_SECRET=${secret}\r\nB=2\r\n`);
    expect(parseEnv(readFileSync(file, 'utf8')).MITPO_WEBHOOK_SECRET).toBe(secret);
  });

  it("quotes a secret an env file's reader would cut short (a #), so the file gives back the secret MITPO issued", async () => {
    api.setMode('hash_in_secret');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mitpo-cli-'));
    const file = path.join(dir, '.env');
    const run = await runCli(['endpoints', 'create', '--url', 'https://example.com/h', '--events', 'connection.active', '--write-env', file], { env: env() });
    expect(run.code).toBe(0);
    const secret = /Signing secret \(MITPO shows it only now\): (\S+)/.exec(run.stdout)![1]!;
    expect(secret).toContain('#');
    expect(parseEnv(readFileSync(file, 'utf8')).MITPO_WEBHOOK_SECRET).toBe(secret);
  });

  it.each([
    ['a directory that does not exist', (dir: string) => path.join(dir, 'missing', '.env')],
    ['an empty path', () => ''],
  ])('refuses --write-env in %s with exit 2, before creating the endpoint', async (_case, fileIn) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mitpo-cli-'));
    const run = await runCli(['endpoints', 'create', '--url', 'https://example.com/h', '--events', 'connection.active', '--write-env', fileIn(dir)], { env: env() });
    expect(run.code).toBe(2);
    expect(run.stdout).not.toContain('Signing secret');
    expect(api.endpoints.size).toBe(0);
  });

  it('leaves an existing 0644 env file 0600, with no temporary file left behind', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mitpo-cli-'));
    const file = path.join(dir, '.env');
    writeFileSync(file, 'PORT=3000\n');
    chmodSync(file, 0o644);
    const run = await runCli(['endpoints', 'create', '--url', 'https://example.com/h', '--events', 'connection.active', '--write-env', file], { env: env() });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`Wrote MITPO_WEBHOOK_SECRET to ${file}\n`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toMatch(/^PORT=3000\nMITPO_WEBHOOK_SECRET=whsec_whk_\w+_secret\n$/);
    expect(readdirSync(dir)).toEqual(['.env']);
  });

  it('refuses a symbolic link as --write-env with exit 2, before creating the endpoint, and leaves its target alone', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mitpo-cli-'));
    const target = path.join(dir, 'elsewhere.txt');
    writeFileSync(target, 'precious\n');
    chmodSync(target, 0o644);
    const link = path.join(dir, '.env');
    symlinkSync(target, link);
    const run = await runCli(['endpoints', 'create', '--url', 'https://example.com/h', '--events', 'connection.active', '--write-env', link], { env: env() });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(new RegExp(`^mitpo-webhooks endpoints: refusing --write-env ${link.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: it is a symbolic link, never written through; pass the path of the file itself\n`));
    expect(api.requests).toHaveLength(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(target, 'utf8')).toBe('precious\n');
    expect(statSync(target).mode & 0o777).toBe(0o644);
    // A dangling link too: following it would create a file wherever it points.
    const dangling = path.join(dir, 'dangling.env');
    symlinkSync(path.join(dir, 'created-through-link'), dangling);
    const second = await runCli(['endpoints', 'create', '--url', 'https://example.com/h', '--events', 'connection.active', '--write-env', dangling], { env: env() });
    expect(second.code).toBe(2);
    expect(second.stderr).toContain('it is a symbolic link');
    expect(readdirSync(dir).sort()).toEqual(['.env', 'dangling.env', 'elsewhere.txt']);
  });

  it('refuses to write a signing secret with control characters (a newline would add an env line), showing it escaped', async () => {
    api.setMode('control_chars');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mitpo-cli-'));
    const file = path.join(dir, '.env');
    writeFileSync(file, 'PORT=3000\n', { mode: 0o600 });
    const run = await runCli(['endpoints', 'create', '--url', 'https://example.com/h', '--events', 'connection.active', '--write-env', file], { env: env() });
    expect(run.code).toBe(1);
    // Found in review: a character past U+FFFF was escaped as its first half only, and could not be recovered.
    expect(run.stdout).toContain('Signing secret (MITPO shows it only now): whsec_ctl\\u{a}EVIL=1\\u{e0100}\n');
    expect(run.stderr).toBe(
      `mitpo-webhooks endpoints: the signing secret MITPO returned contains characters that cannot be printed as they are (control, bidirectional, zero-width, drawn as nothing, or half of a UTF-16 pair): not written to ${file}\n`,
    );
    expect(readFileSync(file, 'utf8')).toBe('PORT=3000\n');
    expect(readdirSync(dir)).toEqual(['.env']);
  });

  it('strips control characters from what it prints of the server’s answers', async () => {
    api.setMode('control_chars');
    const listed = await runCli(['endpoints', 'list'], { env: env() });
    expect(listed.code).toBe(0);
    const clean = '[2J[31mredX-Injected: yes1m';
    expect(listed.stdout).toBe(`whk_${clean}  https://example.com/${clean}  [${clean}]  created ${clean}\n`);
    const failed = await runCli(['endpoints', 'delete', 'whk_1'], { env: env() });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toBe(`mitpo-webhooks endpoints: MITPO's API answered DELETE /v1/webhooks/whk_1 with 500: Broken ${clean} (MITPO request id req_${clean})\n`);
  });

  it('exits 1 on a redirect from the API, never following it', async () => {
    const elsewhere = await startMitpoApiMock();
    try {
      api.setMode('redirect');
      api.setRedirectTo(`${elsewhere.baseUrl}/v1/webhooks`);
      const run = await runCli(['endpoints', 'list'], { env: env() });
      expect(run.code).toBe(1);
      expect(run.stderr).toBe(
        `mitpo-webhooks endpoints: MITPO's API answered GET /v1/webhooks with a redirect (302) to ${elsewhere.baseUrl}/v1/webhooks; redirects are not followed: check MITPO_API_BASE_URL\n`,
      );
      expect(elsewhere.requests).toHaveLength(0);
    } finally {
      await elsewhere.close();
    }
  });

  it('exits 1 on an answer over 1 MiB', async () => {
    api.setMode('huge');
    const run = await runCli(['endpoints', 'list'], { env: env() });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe("mitpo-webhooks endpoints: MITPO's API answered GET /v1/webhooks with 200 and a body larger than 1048576 bytes; it was not read\n");
  });

  it.each([
    ['a wrong API key (401)', () => ({ MITPO_API_KEY: 'mk_test_wrong', MITPO_API_BASE_URL: api.baseUrl }), /answered GET \/v1\/webhooks with 401: Invalid API key \(check MITPO_API_KEY\)/],
    // With MITPO's request id, which its support asks for.
    ['a server error (500)', () => (api.setMode('server_error'), env()), /answered GET \/v1\/webhooks with 500: Something went wrong.* \(MITPO request id req_\d{8}\)\n$/],
    ['a malformed envelope', () => (api.setMode('malformed'), env()), /unexpected body \(success: /],
    ['a refused connection', () => ({ MITPO_API_KEY: API_KEY, MITPO_API_BASE_URL: closedBaseUrl }), /Could not reach MITPO's API at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/],
  ])('exits 1 with a clear message on %s, never printing the key', async (_name, makeEnv, message) => {
    const run = await runCli(['endpoints', 'list'], { env: makeEnv() });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(message);
    expect(run.stderr).not.toContain('mk_test_wrong');
    expectNoKey(run);
  });

  it.each([
    [['endpoints'], /needs an action/],
    [['endpoints', 'create', '--url', 'http://example.com/h', '--events', 'dispatch.completed'], /https:\/\/ URL/],
    [['endpoints', 'create', '--url', 'https://example.com/h', '--events', 'dispatch.complete'], /unknown event type "dispatch.complete"/],
    [['endpoints', 'create', '--url', 'https://example.com/h'], /needs --events/],
    [['endpoints', 'delete'], /needs the endpoint id/],
    [['endpoints', 'rename'], /unknown endpoints action "rename"/],
    [['endpoints', 'list', '--url', 'https://example.com/h'], /--url goes with create/],
    [['endpoints', 'list', '--write-env', '.env'], /--write-env goes with create/],
    [['endpoints', 'delete', 'whk_1', '--events', 'dispatch.completed'], /--events goes with create/],
  ])('exits 2 with the usage on bad arguments: %j', async (args, message) => {
    const run = await runCli(args, { env: env() });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(api.requests).toHaveLength(0);
  });

  it('exits 2 when MITPO_API_KEY holds a character no key has, never printing the key', async () => {
    const run = await runCli(['endpoints', 'list'], { env: { MITPO_API_KEY: 'mk_live_K3YB0DY\nPART2', MITPO_API_BASE_URL: api.baseUrl } });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('MITPO_API_KEY holds');
    expect(run.stdout + run.stderr).not.toMatch(/K3YB0DY|PART2/);
    expect(api.requests).toHaveLength(0);
  });

  it('exits 2 when MITPO_API_KEY is not set', async () => {
    const run = await runCli(['endpoints', 'list'], { env: { MITPO_API_BASE_URL: api.baseUrl } });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('MITPO_API_KEY is not set');
  });
});

describe('--help', () => {
  it.each([[[]], [['--help']], [['send', '--help']], [['sign', '--help']], [['listen', '-h']], [['endpoints', '--help']]])(
    'mitpo-webhooks %j prints its usage',
    async (args) => {
      const run = await runCli(args);
      expect(run.code).toBe(args.length === 0 ? 2 : 0);
      expect(run.stdout).toMatch(/^Usage:/);
    },
  );
});

// Found by a hunt: what a command prints ends up in CI logs, and a URL given in the wrong place, or
// to send, was printed with its password.
describe('a URL with credentials on the command line', () => {
  it.each([
    [['deliveries', 'list', 'redis://:LEAKCANARY@127.0.0.1:6379']],
    [['deliveries', 'postgres://u:LEAKCANARY@127.0.0.1/db']],
    [['migrate', 'postgres://u:LEAKCANARY@127.0.0.1/db']],
    [['send', 'http://user:LEAKCANARY@127.0.0.1:1/webhooks/mitpo', '--event', 'dispatch.completed', '--secret', 'whsec_cli']],
  ])('is never printed with its password: %j', async (args) => {
    const run = await runCli(args);
    expect(run.code).not.toBe(0);
    expect(run.stdout + run.stderr).not.toContain('LEAKCANARY');
    expect(run.stdout + run.stderr).toMatch(/:\/\/…@/);
  });
});

describe('mitpo-webhooks deliveries', () => {
  it('exits 1 with a clear message, promptly, when Redis cannot be reached', async () => {
    const run = await runCli(['deliveries', 'list', '--redis', 'redis://127.0.0.1:1']);
    expect(run.code).toBe(1);
    // Found by a hunt: every failure read "Connection is closed.", ioredis's word for any of them.
    expect(run.stderr).toContain('Redis could not be reached (connect ECONNREFUSED 127.0.0.1:1)');
  });

  it.each([['http://127.0.0.1:6379/7'], ['redis://127.0.0.1:6379/abc']])('exits 2 for %s, which names no Redis database', async (url) => {
    const run = await runCli(['deliveries', 'list', '--redis', url]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/a redis:\/\/ or rediss:\/\/ URL whose path, if any, is a database number/);
  });

  it.each([
    [['deliveries'], /needs list, show or retry/],
    [['deliveries', 'list'], /no queue: pass --redis redis:\/\/host:6379 or --postgres/],
    [['deliveries', 'show', '--redis', 'redis://127.0.0.1:1'], /needs a delivery key/],
    [['deliveries', 'retry', 'k', '--all-failed', '--redis', 'redis://127.0.0.1:1'], /a delivery key, or --all-failed \(not both\)/],
    [['deliveries', 'list', '--state', 'lost', '--redis', 'redis://127.0.0.1:1'], /--state must be one of/],
    [['deliveries', 'list', '--queue', 'a:b', '--redis', 'redis://127.0.0.1:1'], /--queue must be a BullMQ queue name/],
    [['deliveries', 'list', '--queue', '', '--redis', 'redis://127.0.0.1:1'], /--queue must be a BullMQ queue name/],
    // Options the action or the store does not read were dropped without a word.
    [['deliveries', 'show', 'k', '--state', 'waiting', '--redis', 'redis://127.0.0.1:1'], /--state goes with list, not show/],
    [['deliveries', 'retry', '--all-failed', '--limit', '5', '--redis', 'redis://127.0.0.1:1'], /--limit goes with list, not retry/],
    [['deliveries', 'list', '--all-failed', '--redis', 'redis://127.0.0.1:1'], /--all-failed goes with retry, not list/],
    [['deliveries', 'list', '--queue', 'mitpo', '--postgres', 'postgres://127.0.0.1:1/db'], /--queue names a BullMQ queue/],
    [['deliveries', 'list', '--schema', 'mitpo', '--redis', 'redis://127.0.0.1:1'], /--schema goes with the Postgres queue/],
    // Found in a hunt: a URL pg cannot read was an "unexpected error" with pg's stack trace, exit 1.
    [['deliveries', 'list', '--postgres', 'postgres://u:hunter2pw@127.0.0.1:notaport/test'], /the Postgres URL could not be read/],
    [['migrate', '--postgres', 'postgres://u:hunter2pw@127.0.0.1:notaport/test'], /the Postgres URL could not be read/],
  ])('exits 2 on bad arguments: %j', async (args, message) => {
    const run = await runCli(args, { env: { REDIS_URL: undefined, DATABASE_URL: undefined } });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(run.stderr).not.toMatch(/hunter2pw|\bat .*node_modules/);
  });
});
