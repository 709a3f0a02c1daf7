// The job {{name}}: `run` is what jobhost calls, once per attempt, with the
// enqueued JSON args; what the function returns is the job's JSON result.
// Anything thrown fails the job (`throw new JobError('...')` for a plain
// message). See jobhost/index.d.ts for the whole API.
import { job, info, progress, JobError } from './jobhost/index.js';

export const run = job((args) => {
  const name = args.name ?? 'world';
  if (typeof name !== 'string') throw new JobError('invalid args: `name` must be a string');
  info(`greeting ${name}`);
  progress(100, 'done');
  return { greeting: `Hello, ${name}!` };
});
