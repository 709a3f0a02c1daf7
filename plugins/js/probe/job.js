// `tests.js-probe`: a plugin for the host's tests of JavaScript components,
// by `args.mode`:
//   "spin"   loops forever (stopped by the fuel budget)
//   "sleep"  waits `args.seconds` on a timer (stopped by the wall time)
//   "busy"   waits `args.seconds` in a Date.now() loop (burns fuel while waiting)
//   "alloc"  allocates `args.mib` MiB and touches every page (stopped by the memory cap)
//   "raise"  throws an Error the plugin does not catch (the SDK makes it the job's error)
//   "ok"     logs at every level, progress 50, metadata; returns { job_id, attempt }
import { job, info, log, LEVELS, progress, setMetadata, jobId, attempt, sleep, JobError } from '../../../sdk/js/src/index.js';

export const run = job((args) => {
  switch (args.mode) {
    case 'spin': {
      info('spinning');
      let n = 0;
      for (;;) n = (n + 1) | 0;
    }
    case 'sleep':
      info(`sleeping ${args.seconds ?? 1} s`);
      return sleep(Number(args.seconds ?? 1) * 1000).then(() => ({ slept_s: args.seconds }));
    case 'busy': {
      const until = Date.now() + Number(args.seconds ?? 1) * 1000;
      let spins = 0;
      while (Date.now() < until) spins++;
      return { spins };
    }
    case 'alloc': {
      const mib = Number(args.mib ?? 1);
      info(`allocating ${mib} MiB`);
      const chunks = [];
      for (let i = 0; i < mib; i++) {
        const chunk = new Uint8Array(1 << 20);
        for (let j = 0; j < chunk.length; j += 4096) chunk[j] = 1;
        chunks.push(chunk);
      }
      return { allocated_mib: chunks.length };
    }
    case 'raise':
      throw new Error('probe failure');
    case 'ok':
      for (const level of LEVELS) log(level, `probe ${level}`);
      console.log('probe stdout');
      console.error('probe stderr');
      progress(50, 'half way');
      setMetadata('probe', { mode: 'ok', levels: LEVELS.length });
      return { job_id: jobId(), attempt: attempt() };
    default:
      throw new JobError(`unknown mode ${JSON.stringify(args.mode)}: spin, sleep, busy, alloc, raise or ok`);
  }
});
