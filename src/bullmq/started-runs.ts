import type { Job } from 'bullmq';

/**
 * The runs of a job that count as attempts, as the worker counts them: every
 * start BullMQ recorded (`attemptsStarted`), a dead worker's included, but not
 * one put off for its resource's turn or handed back at close, which the worker
 * tallies in the job's `deferrals`. The command line shows the same count.
 */
export function startedRuns(job: Pick<Job, 'attemptsStarted' | 'data'>): number {
  const deferrals = Math.min(Math.max(0, Math.trunc(Number((job.data as { deferrals?: unknown }).deferrals) || 0)), Math.max(0, job.attemptsStarted - 1));
  return job.attemptsStarted - deferrals;
}
