// The receiver's side of the bench's IPC, for every bench script's receivers.

/**
 * Serves `server` on a free port and reports it; then answers 'stats' with the
 * process's CPU time, its handler runs and peak RSS, and 'exit' by exiting,
 * after `beforeExit`.
 */
export function serveForBench(server, { runs = () => 0, beforeExit = async () => {} } = {}) {
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
  process.on('message', async (message) => {
    if (message === 'stats') {
      const { user, system } = process.cpuUsage();
      process.send({ cpuMicros: user + system, user, system, runs: runs(), maxRss: process.resourceUsage().maxRSS * 1024 });
    } else if (message === 'exit') {
      await beforeExit();
      process.exit(0);
    }
  });
}
