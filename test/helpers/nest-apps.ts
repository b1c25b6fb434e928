import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { nextMessage } from './worker-process';
import type { StartNestApp } from './nest-app-process';
import { WEBHOOK_PATH } from './servers';

export interface NestRun {
  handler: string;
  requestId: string | undefined;
}

/** A process serving one NestJS app at a time (nest-app-process.ts), for the suites to send requests to. */
export class NestApps {
  private constructor(
    private readonly child: ChildProcess,
    /** The version of @nestjs/core the apps run on. */
    readonly nestVersion: string,
  ) {}

  static async spawn(): Promise<NestApps> {
    const override = process.env.NEST_MODULES ? ['-r', path.join(__dirname, 'nest-modules-override.ts')] : [];
    const child = fork(path.join(__dirname, 'nest-app-process.ts'), [], {
      execArgv: ['-r', 'ts-node/register/transpile-only', ...override],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const ready = await nextMessage(child, (m) => m.type === 'ready');
    return new NestApps(child, ready.nestVersion as string);
  }

  /** Starts an app; resolves with the base URL and the webhook route's URL. */
  async start(options: Omit<StartNestApp, 'type'>): Promise<{ base: string; url: string }> {
    const reply = await this.ask({ type: 'start', ...options }, 'started');
    const base = `http://127.0.0.1:${reply.port as number}`;
    return { base, url: `${base}${WEBHOOK_PATH}` };
  }

  /** The handler runs the current app recorded, with the request id each saw. */
  async runs(): Promise<NestRun[]> {
    return (await this.ask({ type: 'runs' }, 'runs')).runs as NestRun[];
  }

  /** `app.init()` of an app started with `bootstrap: 'listening-first'`. */
  async init(): Promise<void> {
    await this.ask({ type: 'init' }, 'initialised');
  }

  /** Every provider of the current app as `util.inspect` prints it, instances included. */
  async containerText(): Promise<string> {
    return (await this.ask({ type: 'container' }, 'container')).text as string;
  }

  async close(): Promise<void> {
    await this.ask({ type: 'close' }, 'closed');
  }

  /** `webhooks.receive()` in the current app (for an application context, which serves no HTTP). */
  async receive(delivery: { body: string; headers: Record<string, string> }): Promise<{ status: number; body: unknown }> {
    return (await this.ask({ type: 'receive', ...delivery }, 'received')).answer as { status: number; body: unknown };
  }

  /** Resolves once a gated handler (`gated: true`) has started. */
  entered(): Promise<unknown> {
    return nextMessage(this.child, (m) => m.type === 'entered');
  }

  /** Lets the gated handler finish. */
  release(): void {
    this.child.send({ type: 'release' });
  }

  async exit(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.send({ type: 'exit' });
    await exited;
  }

  private async ask(message: object, answer: string): Promise<Record<string, unknown>> {
    const reply = nextMessage(this.child, (m) => m.type === answer || m.type === 'failed');
    this.child.send(message);
    const got = await reply;
    if (got.type === 'failed') throw new Error(`the NestJS app process failed: ${got.message as string}`);
    return got;
  }
}
