// Generated from wit/job.wit by `jco guest-types wit -n job` (jco 1.35.0); do not edit.
// Types of the host interface the SDK wraps; plugins use ./index.js instead.
declare module 'jobhost:plugin/context@0.1.0' {
  /**
   * Appends one line to the job log and streams it to followers.
   * The log is bounded per job (lines and bytes); past the bound, lines are
   * dropped and a single warning says how many were lost.
   */
  export function log(level: Level, message: string): void;
  /**
   * Reports progress. `percent` is clamped to 0..=100 (NaN counts as 0).
   * Followers see the latest value; the host may coalesce frequent updates
   * but always keeps the last one.
   */
  export function progress(percent: number, message: string | undefined): void;
  /**
   * Attaches a JSON value to the job under `key`, shown in the job details.
   * Fails, without trapping, when `json` is not valid JSON or is too large.
   */
  export function setMetadata(key: string, json: string): void;
  /**
   * True once someone asked to cancel this job. A job that checks it and
   * returns early ends `cancelled`; one that does not is stopped hard after
   * the cancel grace period.
   */
  export function isCancelled(): boolean;
  /**
   * The id of the job being run (a UUID string), stable across attempts.
   */
  export function jobId(): string;
  /**
   * Which attempt this is: 1 for the first run, 2 for the first retry, ...
   */
  export function attempt(): number;
  /**
   * Severity of a log line, as in most logging libraries.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * ## `"debug"`
   * 
   * ## `"info"`
   * 
   * ## `"warn"`
   * 
   * ## `"error"`
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
