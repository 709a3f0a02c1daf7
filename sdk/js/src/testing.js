// Unit tests of a job under Node: run them with
//   node --import ./jobhost/register.js --test
// (the register hook maps the host interface to ./mock-context.js), then
//   import { invoke } from './jobhost/testing.js';
//   const out = await invoke(run, { text: 'a b a' }, { attempt: 2 });
//   assert.equal(out.status, 'completed');
import { format } from 'node:util';
import { state, fresh } from './mock-context.js';

const CONSOLE_LEVELS = { log: 'info', info: 'info', debug: 'error', trace: 'error', warn: 'error', error: 'error' };

/** Starts over: no logs, progress or metadata; job id, attempt and cancel flag from `options`. */
export function reset(options = {}) {
  Object.assign(state, fresh(options));
}

/** Requests cancellation: from now on `isCancelled()` is true. */
export function cancel() {
  state.cancelled = true;
}

/** The log lines so far, `{ level, message }`, console output included during `invoke`. */
export function logs() {
  return state.logs.slice();
}

/** The progress reports so far, `{ percent, message }` (percent clamped, message or null). */
export function progressReports() {
  return state.progress.slice();
}

/** The metadata so far, key to decoded value. */
export function metadata() {
  return structuredClone(state.metadata);
}

/** How many times the job called `isCancelled()`. */
export function cancelChecks() {
  return state.cancelChecks;
}

/**
 * Calls a `run` export as the host does, in a fresh mock context: `args`
 * (a value, JSON-encoded here, or a string passed as is) in, and the outcome
 * out, as the host would record it: `{ status: 'completed', result, value }`
 * or `{ status: 'failed', kind, message }` with kind `plugin_error`,
 * `cancelled` (an error after cancellation was requested) or `trap` (run
 * threw something that is not a string or returned something that is not a
 * string, which would trap the component), plus `logs`, `progress`,
 * `metadata` and `cancelChecks`.
 */
export async function invoke(run, args = {}, options = {}) {
  reset(options);
  const json = typeof args === 'string' ? args : JSON.stringify(args);
  const restore = captureConsole();
  let outcome;
  try {
    let returned = run(json);
    if (returned !== null && typeof returned?.then === 'function') returned = await returned;
    if (typeof returned === 'string') {
      let value;
      try {
        value = JSON.parse(returned);
      } catch {
        value = undefined;
      }
      outcome = { status: 'completed', result: returned, value };
    } else {
      outcome = { status: 'failed', kind: 'trap', message: `run returned ${typeof returned}, not a string` };
    }
  } catch (e) {
    outcome =
      typeof e === 'string'
        ? { status: 'failed', kind: state.cancelled ? 'cancelled' : 'plugin_error', message: e }
        : { status: 'failed', kind: 'trap', message: `run threw a ${e?.constructor?.name ?? typeof e}, not a string: ${e}` };
  } finally {
    restore();
  }
  return { ...outcome, logs: logs(), progress: progressReports(), metadata: metadata(), cancelChecks: state.cancelChecks };
}

// In a component stdout is logged at info and stderr at error; console.log
// and console.info write to stdout, console.debug, trace, warn and error to
// stderr (StarlingMonkey).
function captureConsole() {
  const saved = {};
  for (const [method, level] of Object.entries(CONSOLE_LEVELS)) {
    saved[method] = console[method];
    console[method] = (...parts) => {
      const message = format(...parts);
      state.logs.push({ level, message, console: true });
      if (state.echo) saved.error.call(console, `[${level}] ${message}`);
    };
  }
  return () => Object.assign(console, saved);
}
