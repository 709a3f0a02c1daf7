import { test } from 'node:test';
import assert from 'node:assert/strict';
import { invoke } from '../../../sdk/js/src/testing.js';
import { run } from './job.js';

test('ok: every level, progress, metadata, id and attempt', async () => {
  const out = await invoke(run, { mode: 'ok' }, { jobId: 'j', attempt: 3 });
  assert.equal(out.status, 'completed');
  assert.deepEqual(out.value, { job_id: 'j', attempt: 3 });
  assert.deepEqual(out.logs.map((l) => l.level), ['trace', 'debug', 'info', 'warn', 'error', 'info', 'error']);
  assert.deepEqual(out.progress, [{ percent: 50, message: 'half way' }]);
  assert.deepEqual(out.metadata, { probe: { mode: 'ok', levels: 5 } });
});

test('raise: an uncaught Error is the job error, its stack in the log', async () => {
  const out = await invoke(run, { mode: 'raise' });
  assert.equal(out.kind, 'plugin_error');
  assert.equal(out.message, 'Error: probe failure');
  assert.equal(out.logs[0].level, 'error');
  assert.match(out.logs[0].message, /^Error: probe failure\n\s+at /);
});

test('alloc and sleep finish within their limits', async () => {
  assert.deepEqual((await invoke(run, { mode: 'alloc', mib: 2 })).value, { allocated_mib: 2 });
  assert.deepEqual((await invoke(run, { mode: 'sleep', seconds: 0.01 })).value, { slept_s: 0.01 });
});
