// npm test: runs the job under Node against a mock host (jobhost/testing.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { invoke } from './jobhost/testing.js';
import { run } from './job.js';

test('greets', async () => {
  const out = await invoke(run, { name: 'Ada' });
  assert.equal(out.status, 'completed');
  assert.deepEqual(out.value, { greeting: 'Hello, Ada!' });
  assert.deepEqual(out.logs, [{ level: 'info', message: 'greeting Ada' }]);
  assert.deepEqual(out.progress, [{ percent: 100, message: 'done' }]);
});

test('a bad name is the job error', async () => {
  const out = await invoke(run, { name: 42 });
  assert.equal(out.kind, 'plugin_error');
  assert.equal(out.message, 'invalid args: `name` must be a string');
});
