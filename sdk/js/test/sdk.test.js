import { test } from 'node:test';
import assert from 'node:assert/strict';
import { job, JobError, setMetadata, info, log, progress, isCancelled, sleep } from '../src/index.js';
import { invoke } from '../src/testing.js';

const failWith = async (fn, args = {}) => (await invoke(job(fn), args));

test('thrown values become the job error, never a trap', async () => {
  assert.equal((await failWith(() => { throw 'plain'; })).message, 'plain');
  assert.equal((await failWith(() => { throw new JobError('expected'); })).message, 'expected');
  assert.equal((await failWith(() => { throw new TypeError('bad'); })).message, 'TypeError: bad');
  assert.equal((await failWith(() => { throw { code: 7 }; })).message, 'uncaught {"code":7}');
  assert.equal((await failWith(() => { throw null; })).message, 'uncaught null');
  assert.equal((await failWith(async () => { await sleep(1); throw new RangeError('later'); })).message, 'RangeError: later');
  const caused = await failWith(() => { throw new Error('outer', { cause: new Error('inner') }); });
  assert.match(caused.logs[0].message, /caused by: Error: inner/);
  for (const out of [caused]) assert.equal(out.kind, 'plugin_error');
});

test('results: encoded, undefined is null, unserialisable is an error', async () => {
  assert.equal((await failWith(() => 'text')).result, '"text"');
  assert.equal((await failWith(() => {})).result, 'null');
  assert.equal((await failWith(async () => ({ a: 1 }))).result, '{"a":1}');
  assert.match((await failWith(() => ({ n: 1n }))).message, /^result is not serialisable: TypeError: /);
});

test('invalid args', async () => {
  assert.match((await failWith((a) => a, 'nope')).message, /^invalid args: /);
});

test('context calls and their checks', async () => {
  const out = await failWith(() => {
    info('n =', 3, { a: 1 });
    progress(150, 'over');
    progress(NaN);
    assert.throws(() => log('fatal', 'x'), TypeError);
    assert.throws(() => setMetadata('f', () => 1), TypeError);
    assert.throws(() => setMetadata('big', 'x'.repeat(70000)), JobError);
    setMetadata('ok', [1, 2]);
    return isCancelled();
  }, {}, );
  assert.equal(out.value, false);
  assert.deepEqual(out.logs, [{ level: 'info', message: 'n = 3 {"a":1}' }]);
  assert.deepEqual(out.progress, [{ percent: 100, message: 'over' }, { percent: 0, message: null }]);
  assert.deepEqual(out.metadata, { ok: [1, 2] });
});

test('the mock reports what would trap', async () => {
  assert.equal((await invoke(() => { throw new Error('raw'); })).kind, 'trap');
  assert.equal((await invoke(() => 42)).kind, 'trap');
});
