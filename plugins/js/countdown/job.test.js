import { test } from 'node:test';
import assert from 'node:assert/strict';
import { invoke } from '../../../sdk/js/src/testing.js';
import { run } from './job.js';

test('steps, progress and result', async () => {
  const out = await invoke(run, { seconds: 0.05, steps: 5 }, { jobId: 'job-1', attempt: 2 });
  assert.equal(out.status, 'completed');
  assert.equal(out.value.steps, 5);
  assert.equal(out.value.job_id, 'job-1');
  assert.equal(out.value.attempt, 2);
  assert.ok(out.value.slept_ms >= 40);
  assert.deepEqual(out.progress.map((p) => p.percent), [20, 40, 60, 80, 100]);
  assert.equal(out.logs.filter((l) => l.message.startsWith('step ')).length, 5);
});

test('returns early once cancelled', async () => {
  const out = await invoke(run, { seconds: 10, steps: 100 }, { cancelAfter: 3 });
  assert.equal(out.status, 'failed');
  assert.equal(out.kind, 'cancelled');
  assert.equal(out.message, 'cancelled');
  assert.equal(out.cancelChecks, 4);
  assert.equal(out.progress.length, 3);
  assert.equal(out.logs.at(-1).message, 'cancelled at step 4 of 100');
});

test('rejects bad seconds', async () => {
  const out = await invoke(run, { seconds: -1 });
  assert.equal(out.kind, 'plugin_error');
  assert.equal(out.message, 'seconds must be between 0 and 86400');
});
