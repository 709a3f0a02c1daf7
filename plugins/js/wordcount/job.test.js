// node --import ../../sdk/js/src/register.js --test   (from plugins/js: npm test)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { invoke } from '../../../sdk/js/src/testing.js';
import { run, isWordChar } from './job.js';

test('counts, ranks and records metadata', async () => {
  const out = await invoke(run, { text: 'The cat and the hat. THE END!', top: 2 });
  assert.equal(out.status, 'completed');
  assert.deepEqual(out.value, { total_words: 7, distinct_words: 5, top: [['the', 3], ['and', 1]] });
  assert.deepEqual(out.metadata, { distinct_words: 5 });
  assert.deepEqual(out.progress, [{ percent: 100, message: null }]);
  assert.deepEqual(out.logs, [{ level: 'info', message: '7 words, 5 distinct', console: true }]);
});

test('top defaults to 10; letters of other scripts are words', async () => {
  const text = Array.from({ length: 12 }, (_, i) => `w${i}`).join(' ') + ' Straße straße 日本 — ok';
  const out = await invoke(run, { text });
  assert.equal(out.value.top.length, 10);
  assert.deepEqual(out.value.top[0], ['straße', 2]);
  assert.equal(out.value.total_words, 16);
  assert.ok(isWordChar('ж') && isWordChar('7') && !isWordChar('—') && !isWordChar('!'));
});

test('bad args are the job error', async () => {
  assert.deepEqual((await invoke(run, {})).message, 'invalid args: `text` must be a string');
  const bad = await invoke(run, '{"text":');
  assert.equal(bad.kind, 'plugin_error');
  assert.match(bad.message, /^invalid args: /);
});
