// Starting the bench's receivers and load generators, each in a process of its
// own with an IPC channel: one copy for every bench script.
import { execFileSync, fork, spawn } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

/** Whether receivers can be pinned to one core and the load to another. */
export const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-c', '0', 'true']);
    return os.cpus().length >= 2;
  } catch {
    return false;
  }
})();

/**
 * Starts a script beside this one, pinned to `core` when given and taskset
 * exists. `ask(message, until)` sends `message` (if any) and resolves with the
 * first reply `until` accepts; it rejects if the process exits first.
 */
export function start(script, args, core) {
  const file = fileURLToPath(new URL(script, import.meta.url));
  const child =
    core !== undefined && hasTaskset
      ? spawn('taskset', ['-c', String(core), process.execPath, file, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      : fork(file, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ask = (message, until = () => true) =>
    new Promise((resolve, reject) => {
      const onExit = (code) => reject(new Error(`${script} ${args.join(' ')} exited (${code})`));
      const onMessage = (reply) => {
        if (!until(reply)) return;
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(reply);
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
      if (message !== undefined) child.send(message);
    });
  return { child, ask };
}

export const median = (list) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];
