// @jobhost/sdk: write a jobhost job plugin in JavaScript.
//
//   import { job, info, progress } from './jobhost/index.js';
//   export const run = job((args) => {
//     info(`hello ${args.name}`);
//     progress(100);
//     return { greeting: `Hello, ${args.name}!` };
//   });
//
// `job(fn)` makes the component's `run` export: it decodes the JSON args,
// calls `fn`, encodes what it returns (or what its promise resolves to) as the
// JSON result, and turns anything thrown into the job's error message, so a
// plugin never traps on a JavaScript exception. The other exports talk to the
// host through the `jobhost:plugin/context` interface (in tests under Node,
// to the mock of ./testing.js).
import * as host from 'jobhost:plugin/context@0.1.0';

/** The log levels of the host, least severe first. */
export const LEVELS = Object.freeze(['trace', 'debug', 'info', 'warn', 'error']);

/**
 * An expected failure: the job's error is its message alone (no `Error: `
 * prefix) and no stack is logged. Like `Error::msg` in the Rust SDK.
 */
export class JobError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'JobError';
  }
}

/**
 * Wraps a job function into the `run` export of a plugin:
 * `export const run = job((args) => result)`. `fn` may be async.
 */
export function job(fn) {
  if (typeof fn !== 'function') {
    throw new TypeError('job(fn): fn must be a function from args to a JSON-serialisable result');
  }
  return function run(argsJson) {
    let args;
    try {
      args = JSON.parse(argsJson);
    } catch (e) {
      throw `invalid args: ${safeMessage(e)}`;
    }
    let result;
    try {
      result = fn(args);
    } catch (e) {
      throw failure(e);
    }
    if (isThenable(result)) {
      // The component's event loop runs until this promise settles.
      return Promise.resolve(result).then(encode, (e) => {
        throw failure(e);
      });
    }
    return encode(result);
  };
}

/** Appends a line to the job log. Values that are not strings are formatted like console.log does. */
export function log(level, ...message) {
  if (!LEVELS.includes(level)) {
    throw new TypeError(`unknown log level ${JSON.stringify(level)}: one of ${LEVELS.join(', ')}`);
  }
  host.log(level, format(message));
}

/** Logs at `trace`. */
export const trace = (...message) => log('trace', ...message);
/** Logs at `debug`. */
export const debug = (...message) => log('debug', ...message);
/** Logs at `info`. */
export const info = (...message) => log('info', ...message);
/** Logs at `warn`. */
export const warn = (...message) => log('warn', ...message);
/** Logs at `error`. */
export const error = (...message) => log('error', ...message);

/** Reports progress in percent (the host clamps it to 0..=100), with an optional message. */
export function progress(percent, message) {
  host.progress(Number(percent), message == null ? undefined : String(message));
}

/**
 * Attaches `value`, JSON-encoded, to the job under `key`. Throws a TypeError
 * when the value cannot be encoded and a JobError when the host refuses it
 * (over 64 KiB).
 */
export function setMetadata(key, value) {
  const json = JSON.stringify(value);
  if (json === undefined) {
    throw new TypeError(`metadata ${JSON.stringify(String(key))}: ${typeof value} is not JSON-serialisable`);
  }
  try {
    host.setMetadata(String(key), json);
  } catch (e) {
    throw new JobError(`metadata ${JSON.stringify(String(key))} refused: ${e?.payload ?? safeMessage(e)}`);
  }
}

/** True once cancellation was requested: return early (e.g. `throw new JobError('cancelled')`). */
export function isCancelled() {
  return host.isCancelled();
}

/** The id of the job being run (a UUID), the same across attempts. */
export function jobId() {
  return host.jobId();
}

/** The attempt number: 1 for the first run, 2 for the first retry, ... */
export function attempt() {
  return host.attempt();
}

/**
 * Waits `ms` milliseconds without burning fuel (a timer on the component's
 * event loop): `await sleep(100)` inside an async job.
 */
export function sleep(ms) {
  const delay = Math.max(0, Number(ms) || 0);
  return new Promise((resolve) => setTimeout(resolve, delay));
}

function encode(result) {
  let json;
  try {
    json = JSON.stringify(result);
  } catch (e) {
    throw failure(e, 'result is not serialisable: ');
  }
  return json === undefined ? 'null' : json;
}

// SpiderMonkey throws this string when an allocation fails, here when the
// job reached the host's memory cap. Rethrown as an Error it traps the
// component on purpose, so the host reports `memory_limit` (as for a Rust
// job) rather than a `plugin_error` "out of memory". Allocated up front.
const OUT_OF_MEMORY = 'out of memory';
const OUT_OF_MEMORY_TRAP = new Error(OUT_OF_MEMORY);

// The job's error message for a thrown value; logs the stack of an
// unexpected Error. Never throws.
function failure(thrown, prefix = '') {
  try {
    if (thrown === OUT_OF_MEMORY) return OUT_OF_MEMORY_TRAP;
    if (typeof thrown === 'string') return prefix + thrown;
    if (thrown instanceof JobError) return prefix + String(thrown.message);
    if (isErrorLike(thrown)) {
      const message = prefix + errorHeader(thrown);
      try {
        host.log('error', `${message}\n${stackOf(thrown)}`.trimEnd());
      } catch {
        // The message still reaches the host as the job's error.
      }
      return message;
    }
    return prefix + `uncaught ${describeValue(thrown)}`;
  } catch {
    return prefix + 'uncaught exception (not describable)';
  }
}

function isErrorLike(value) {
  return value instanceof Error || (value !== null && typeof value === 'object' && typeof value.message === 'string');
}

function errorHeader(e) {
  const name = String(e.name || e.constructor?.name || 'Error');
  const message = String(e.message ?? '');
  return message ? `${name}: ${message}` : name;
}

// The stack without the componentize-js glue frames, and the causes.
function stackOf(e, depth = 0) {
  let stack = typeof e.stack === 'string' ? e.stack : '';
  const header = errorHeader(e);
  if (stack.startsWith(header)) stack = stack.slice(header.length); // V8 repeats the header
  stack = stack
    .split('\n')
    .filter((line) => line.trim() && !line.includes('/sources/initializer.js'))
    .map((line) => (line.startsWith(' ') ? line : `    at ${line}`))
    .join('\n');
  if (e.cause !== undefined && depth < 4) {
    const cause = isErrorLike(e.cause) ? `${errorHeader(e.cause)}\n${stackOf(e.cause, depth + 1)}` : describeValue(e.cause);
    stack += `\ncaused by: ${cause}`;
  }
  return stack;
}

function safeMessage(e) {
  try {
    return isErrorLike(e) ? String(e.message) : describeValue(e);
  } catch {
    return 'unknown error';
  }
}

function describeValue(value) {
  try {
    const json = JSON.stringify(value);
    if (json !== undefined) return json;
  } catch {
    // cyclic or BigInt: fall through
  }
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function format(parts) {
  return parts
    .map((part) => {
      if (typeof part === 'string') return part;
      if (isErrorLike(part)) return errorHeader(part);
      if (part !== null && typeof part === 'object') return describeValue(part);
      return String(part);
    })
    .join(' ');
}

function isThenable(value) {
  try {
    return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function';
  } catch {
    return false;
  }
}
