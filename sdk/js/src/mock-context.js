// A stand-in for the host's `jobhost:plugin/context@0.1.0` under Node, where
// the real interface does not exist. ./hooks.js maps that import here;
// ./testing.js sets this state up and reads it back. It checks its arguments
// as the component bindings and the host do (a level that is not one of the
// five, a message that is not a string, metadata that is not JSON or is over
// 64 KiB), so a test fails where the real job would.

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];
const METADATA_LIMIT = 64 * 1024;

/** The mock's state; use the functions of ./testing.js rather than this. */
export const state = fresh();

export function fresh(options = {}) {
  return {
    jobId: options.jobId ?? '00000000-0000-4000-8000-000000000000',
    attempt: options.attempt ?? 1,
    cancelled: Boolean(options.cancelled),
    cancelAfter: options.cancelAfter ?? null,
    cancelChecks: 0,
    logs: [],
    progress: [],
    metadata: {},
    echo: Boolean(options.echo ?? process.env.JOBHOST_MOCK_ECHO),
  };
}

class ComponentError extends Error {
  constructor(payload) {
    super(payload);
    this.name = 'ComponentError';
    this.payload = payload;
  }
}

function expectString(value) {
  if (typeof value !== 'string') {
    throw new TypeError(`expected a string, received [${value === null ? 'null' : typeof value}]`);
  }
}

function echo(line) {
  if (state.echo) process.stderr.write(`${line}\n`);
}

export function log(level, message) {
  if (!LEVELS.includes(level)) throw new TypeError(`${JSON.stringify(level)} is not one of the cases of level`);
  expectString(message);
  state.logs.push({ level, message });
  echo(`[${level}] ${message}`);
}

export function progress(percent, message) {
  if (typeof percent !== 'number') throw new TypeError(`expected a number, received [${typeof percent}]`);
  if (message !== undefined && message !== null) expectString(message);
  const clamped = Number.isNaN(percent) ? 0 : Math.min(100, Math.max(0, Math.fround(percent)));
  state.progress.push({ percent: clamped, message: message ?? null });
  echo(`[progress ${clamped}%] ${message ?? ''}`);
}

export function setMetadata(key, json) {
  expectString(key);
  expectString(json);
  let value;
  try {
    value = JSON.parse(json);
  } catch (e) {
    throw new ComponentError(`metadata is not JSON: ${e.message}`);
  }
  const bytes = Buffer.byteLength(json);
  if (bytes > METADATA_LIMIT) {
    throw new ComponentError(`metadata value of ${bytes} bytes is over the ${METADATA_LIMIT}-byte limit`);
  }
  state.metadata[key] = value;
}

export function isCancelled() {
  state.cancelChecks += 1;
  if (state.cancelAfter !== null && state.cancelChecks > state.cancelAfter) state.cancelled = true;
  return state.cancelled;
}

export function jobId() {
  return state.jobId;
}

export function attempt() {
  return state.attempt;
}
