// `examples.js-countdown`: runs for `args.seconds` in `args.steps` steps
// (default one per 100 ms, at least one), logging and reporting progress at
// each, and stops early with the error "cancelled" once the job is cancelled.
// The JavaScript twin of plugins/sleep. It waits with `await sleep(ms)`, a
// timer on the component's event loop: no fuel is burnt while waiting.
import { job, info, progress, isCancelled, jobId, attempt, sleep, JobError } from '../../../sdk/js/src/index.js';

/** @param {{ seconds: number, steps?: number }} args */
export async function countdown({ seconds, steps }) {
  if (typeof seconds !== 'number' || !(seconds >= 0 && seconds <= 86_400)) {
    throw new JobError('seconds must be between 0 and 86400');
  }
  if (steps !== undefined && (!Number.isInteger(steps) || steps < 0)) {
    throw new JobError('steps must be a non-negative integer');
  }
  const total = Math.max(1, steps ?? Math.ceil(seconds * 10));
  const started = Date.now();
  for (let step = 1; step <= total; step++) {
    if (isCancelled()) {
      info(`cancelled at step ${step} of ${total}`);
      throw new JobError('cancelled');
    }
    await sleep((seconds * 1000) / total);
    info(`step ${step} of ${total}`);
    progress((step * 100) / total, `step ${step} of ${total}`);
  }
  return { slept_ms: Date.now() - started, steps: total, job_id: jobId(), attempt: attempt() };
}

export const run = job(countdown);
