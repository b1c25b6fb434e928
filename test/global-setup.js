// Jest shows nothing from a suite whose tests are all skipped, so the reason the
// Redis tests did not run is said here, once, before the run.
module.exports = async function announceSkippedSuites() {
  if (!process.env.REDIS_URL) {
    process.stdout.write(
      '\nSKIPPED: the RedisReplayStore tests against a real Redis (test/integration/redis-replay-store.test.ts, ' +
        'multi-instance-example.test.ts) need REDIS_URL, e.g. REDIS_URL=redis://127.0.0.1:6379 npm test. .ci/run starts a Redis and sets it.\n\n',
    );
  }
};
