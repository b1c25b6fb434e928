import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { MitpoWebhooks, MITPO_EVENT_NAMES, verifySignature } from '../../src';
import { send as post } from '../helpers/http-client';
import { API_KEY, startMitpoApiMock } from '../helpers/mitpo-api-mock';
import { runCli, startCli } from '../helpers/run-cli';
import { listen, type RunningServer } from '../helpers/servers';

const SECRET = 'whsec_cli_tests_0123';

async function liveReceiver() {
  const handled: string[] = [];
  const webhooks = new MitpoWebhooks({ secret: SECRET });
  webhooks.onAny((event) => void handled.push(event.event));
  const server = await listen(http.createServer((req, res) => webhooks.middleware()(req, res, () => res.end())));
  return { server, handled };
}

describe('mitpo-webhooks send', () => {
  let receiver: { server: RunningServer; handled: string[] };
  beforeEach(async () => {
    receiver = await liveReceiver();
  });
  afterEach(() => receiver.server.close());

  it.each(MITPO_EVENT_NAMES)('signs and delivers a sample %s that the receiver handles', async (event) => {
    const run = await runCli(['send', receiver.server.url, '--event', event, '--secret', SECRET]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`→ POST ${receiver.server.url} (${event}`);
    expect(run.stdout).toContain('← 200 accepted');
    expect(receiver.handled).toEqual([event]);
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

  it('exits 1 and shows the error code when the receiver refuses (a wrong secret)', async () => {
    const run = await runCli(['send', receiver.server.url, '--event', 'dispatch.completed', '--secret', 'whsec_wrong_one']);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('← 401 invalid_signature:');
    expect(receiver.handled).toEqual([]);
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

describe('mitpo-webhooks sign', () => {
  const body = '{"event":"dispatch.completed","timestamp":"2026-03-22T10:30:00Z","data":{"dispatch_id":"dsp_ü","channel":"c","status":"s"}}';

  it('prints headers for a body on stdin that verifySignature accepts', async () => {
    const run = await runCli(['sign', '--secret', SECRET, '--sent-at', '1774175400'], { input: body });
    expect(run.code).toBe(0);
    const headers = Object.fromEntries(run.stdout.trim().split('\n').map((line) => line.split(': ') as [string, string]));
    expect(Object.keys(headers)).toEqual(['X-MITPO-Signature', 'X-MITPO-Timestamp', 'X-MITPO-Event']);
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

  it('exits 1 on a body that is not a MITPO event, 2 on a missing file', async () => {
    expect((await runCli(['sign', '--secret', SECRET], { input: 'not json' })).code).toBe(1);
    const noEvent = await runCli(['sign', '--secret', SECRET], { input: '{"data":{}}' });
    expect(noEvent.code).toBe(1);
    expect(noEvent.stderr).toContain('no "event" field');
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
    expect(lines[1]).toMatch(/200 accepted {2}dispatch\.completed at \S+ {2}dispatch_id=dsp_a1b2c3d4 channel=meta_ads status=completed/);
    expect(lines[2]).toMatch(/401 refused {3}invalid_signature: X-MITPO-Signature does not match/);
  });

  it('exits 2 on a bad port', async () => {
    const run = await runCli(['listen', '--port', 'eighty', '--secret', SECRET]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--port must be a port number');
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

  it.each([
    ['a wrong API key (401)', () => ({ MITPO_API_KEY: 'mk_test_wrong', MITPO_API_BASE_URL: api.baseUrl }), /answered GET \/v1\/webhooks with 401: Invalid API key \(check MITPO_API_KEY\)/],
    ['a server error (500)', () => (api.setMode('server_error'), env()), /answered GET \/v1\/webhooks with 500: Something went wrong/],
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
  ])('exits 2 with the usage on bad arguments: %j', async (args, message) => {
    const run = await runCli(args, { env: env() });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
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
