import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/** The real bin as package.json names it, built by `pretest`. */
export const BIN = path.join(__dirname, '../../dist/cli/main.js');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the bin as a child process, without blocking this process's servers.
 * With `stdoutClosed` or `stderrClosed`, that stream's reader is gone from the
 * start, as `| head` leaves it once it has its lines.
 */
export function runCli(
  args: string[],
  options: { env?: Record<string, string | undefined>; input?: string | Buffer; cwd?: string; stdoutClosed?: boolean; stderrClosed?: boolean } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: cliEnv(options.env),
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    if (options.stdoutClosed) child.stdout.destroy();
    else child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    if (options.stderrClosed) child.stderr.destroy();
    else child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input);
  });
}

/** Starts a long-running command and resolves once it printed a line matching `ready`. */
export function startCli(args: string[], ready: RegExp, env: Record<string, string | undefined> = {}) {
  const child: ChildProcess = spawn(process.execPath, [BIN, ...args], { env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const started = new Promise<RegExpExecArray>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = ready.exec(stdout);
      if (match) resolve(match);
    });
    child.on('exit', (code) => reject(new Error(`exited ${code} before it was ready: ${stderr}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    started,
    output: () => stdout,
    errors: () => stderr,
    /** Closes the reading end of its stdout, as `| head` does once it has its lines. */
    closeOutput: () => child.stdout!.destroy(),
    exited,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

function cliEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  for (const [key, value] of Object.entries(extra)) if (value !== undefined) env[key] = value;
  return env;
}
