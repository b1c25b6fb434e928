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
  // Once the reader of stdout has gone (`… | head` with its lines), every write fails
  // with EPIPE, which unhandled crashes with a stack trace. What is left to print has
  // no reader: it is dropped, the command keeps its own exit code, and a long-running
  // one (listen) stops as on Ctrl-C, as a Unix tool ends on SIGPIPE.
  const output = new AbortController();
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    output.abort();
  });
  main(process.argv.slice(2), {
    env: process.env,
    stdin: process.stdin,
    out: (line) => {
      if (!output.signal.aborted) process.stdout.write(`${line}\n`);
    },
    err: (line) => process.stderr.write(`${line}\n`),
    outputClosed: output.signal,
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`mitpo-webhooks: ${String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
