import type { Job } from 'bullmq';

/** The runs of a job the worker put off (for its resource's turn, or handed back at close), as the job records them. */
export function deferralsOf(job: Pick<Job, 'data'>): number {
  return Math.max(0, Math.trunc(Number((job.data as { deferrals?: unknown } | null)?.deferrals) || 0));
}

/**
 * The runs of a job that count as attempts, as the worker counts them: every
 * start BullMQ recorded (`attemptsStarted`), a dead worker's included, but not
 * one put off for its resource's turn or handed back at close, which the worker
 * tallies in the job's `deferrals`. The command line shows the same count.
 */
export function startedRuns(job: Pick<Job, 'attemptsStarted' | 'data'>): number {
  const started = runsOf(job.attemptsStarted);
  return started - Math.min(deferralsOf(job), Math.max(0, started - 1));
}

/**
 * Every run of a job that counted as an attempt: those since BullMQ's count was
 * last reset ({@link startedRuns}) and those before it. An operator's retry
 * (`deliveries retry`) resets that count, so that earlier dead workers do not use
 * up the retried run, and keeps the runs before it in the job's `runsBeforeRetry`:
 * its attempt number counts on from them.
 */
export function runsSoFar(job: Pick<Job, 'attemptsStarted' | 'data'>): number {
  return runsOf((job.data as { runsBeforeRetry?: unknown } | null)?.runsBeforeRetry) + startedRuns(job);
}

/**
 * The runs that counted as attempts ({@link runsSoFar}), at most `attempts` since the
 * last reset: a start after the last attempt (BullMQ counts it) runs nothing and
 * only reports the dead letter, so the dead letter, `deliveries show` and the run
 * after an operator's retry count on from the last run, not from it.
 */
export function attemptsRun(job: Pick<Job, 'attemptsStarted' | 'data'>, attempts: number): number {
  return runsSoFar(job) - Math.max(0, startedRuns(job) - attempts);
}

/** A count of runs BullMQ read from Redis, which is not trusted: anything but a whole number from 0 is 0. */
export function runsOf(stored: unknown): number {
  return typeof stored === 'number' && Number.isSafeInteger(stored) && stored >= 0 ? stored : 0;
}
