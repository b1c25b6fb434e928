import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { SECRET } from './recorder';

/** A queue worker in a process of its own (queue-worker-process.ts) whose handlers start and never finish, to be killed mid-job. */
export function startHangingWorkerProcess(queueName: string): ChildProcess {
  return fork(path.join(__dirname, 'queue-worker-process.ts'), [], {
    execArgv: ['-r', 'ts-node/register/transpile-only'],
    env: { ...process.env, QUEUE_NAME: queueName, SECRET, WORKER_HANG: '1', LOCK_DURATION: '1' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** A queue worker in a process of its own, on Redis at `redisUrl`, that closes its receiver when sent 'close'. */
export function startWorkerProcess(queueName: string, redisUrl: string, enqueueTimeout: number): ChildProcess {
  return fork(path.join(__dirname, 'queue-worker-process.ts'), [], {
    execArgv: ['-r', 'ts-node/register/transpile-only'],
    env: { ...process.env, QUEUE_NAME: queueName, SECRET, REDIS_URL: redisUrl, ENQUEUE_TIMEOUT: String(enqueueTimeout) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** The first IPC message from `child` that `matches`; rejects if the process exits first. */
export function nextMessage(child: ChildProcess, matches: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`worker process exited (${code})`));
    const onMessage = (m: Record<string, unknown>) => {
      if (!matches(m)) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(m);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}
