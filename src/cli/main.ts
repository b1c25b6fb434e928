#!/usr/bin/env node
import { deliveries, DELIVERIES_USAGE } from './commands/deliveries';
import { endpoints, ENDPOINTS_USAGE } from './commands/endpoints';
import { listen, LISTEN_USAGE } from './commands/listen';
import { migrate, MIGRATE_USAGE } from './commands/migrate';
import { send, SEND_USAGE } from './commands/send';
import { sign, SIGN_USAGE } from './commands/sign';
import { CommandError, EXIT, UsageError, type CliIo } from './cli-io';

const MAIN_USAGE = `Usage: mitpo-webhooks <command> [options]

Commands:
  send <url> --event <type>     sign one delivery like MITPO's and POST it
  sign [--file <path>]          print Content-Type and the X-MITPO-* headers for an event body
  listen [--port 3000]          a local receiver that verifies and prints deliveries
  endpoints create|list|delete  manage MITPO webhook endpoints (needs MITPO_API_KEY)
  deliveries list|show|retry    a queued receiver's dead letters and jobs (BullMQ or --postgres)
  migrate --postgres <url>      create the Postgres queue's tables (needs pg)

The signing secret comes from --secret or MITPO_WEBHOOK_SECRET.
Run mitpo-webhooks <command> --help for a command's options.`;

const COMMANDS: Record<string, { run: (argv: string[], io: CliIo) => Promise<number>; usage: string }> = {
  send: { run: send, usage: SEND_USAGE },
  sign: { run: sign, usage: SIGN_USAGE },
  listen: { run: listen, usage: LISTEN_USAGE },
  endpoints: { run: endpoints, usage: ENDPOINTS_USAGE },
  deliveries: { run: deliveries, usage: DELIVERIES_USAGE },
  migrate: { run: migrate, usage: MIGRATE_USAGE },
};

export async function main(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(MAIN_USAGE);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    io.err(`mitpo-webhooks: unknown command ${JSON.stringify(name)}\n\n${MAIN_USAGE}`);
    return EXIT.usage;
  }
  // Every command's --help, here once: the usage is known before its options are parsed.
  const beforeSeparator = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (beforeSeparator.includes('--help') || beforeSeparator.includes('-h')) {
    io.out(command.usage);
    return EXIT.ok;
  }
  try {
    return await command.run(rest, io);
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.err(`mitpo-webhooks ${name}: ${(error as Error).message}\n\n${command.usage}`);
      return EXIT.usage;
    }
    if (error instanceof CommandError) {
      io.err(`mitpo-webhooks ${name}: ${error.message}`);
      return EXIT.failed;
    }
    io.err(`mitpo-webhooks ${name}: unexpected error: ${(error as Error)?.stack ?? String(error)}`);
    return EXIT.failed;
  }
}

if (require.main === module) {
  const out = writerUntilGone(process.stdout);
  const err = writerUntilGone(process.stderr);
  main(process.argv.slice(2), { env: process.env, stdin: process.stdin, out: out.write, err: err.write, outputClosed: out.gone }).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      err.write(`mitpo-webhooks: ${String(error)}`);
      process.exitCode = 1;
    },
  );
}

/**
 * Lines to `stream` until its reader has gone (`… | head` with its lines, or
 * `2>&1 | head`): from then on every write fails with EPIPE, which unhandled
 * crashes the command with a stack trace. What is left has no reader, so it is
 * dropped and the command keeps its own exit code; `gone` tells a long-running
 * command (listen) to stop, as a Unix tool ends on SIGPIPE.
 */
function writerUntilGone(stream: NodeJS.WriteStream): { write: (line: string) => void; gone: AbortSignal } {
  const gone = new AbortController();
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    gone.abort();
  });
  return {
    write: (line) => {
      if (!gone.signal.aborted) stream.write(`${line}\n`);
    },
    gone: gone.signal,
  };
}
