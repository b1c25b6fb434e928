// Jest shows nothing from a suite whose tests are all skipped, so the reason the
// Redis tests, or a Web runtime's, did not run is said here, once, before the run.
const { findRuntimes } = require('./edge/find-runtimes');

module.exports = async function announceSkippedSuites() {
  for (const [runtime, found] of Object.entries(findRuntimes())) {
    if ('missing' in found) {
      process.stdout.write(`\nSKIPPED: the mitpo-webhooks/web tests in ${runtime} (test/edge/) did not run: ${found.missing}.\n`);
    }
  }
  if (!process.env.REDIS_URL) {
    process.stdout.write(
      '\nSKIPPED: the tests against a real Redis (the RedisReplayStore in test/integration/redis-replay-store.test.ts and ' +
        'multi-instance-example.test.ts; the BullMQ queue in bullmq-queue.test.ts and queued-example.test.ts) need REDIS_URL, ' +
        'e.g. REDIS_URL=redis://127.0.0.1:6379 npm test. .ci/run starts a Redis and sets it.\n\n',
    );
  }
};
