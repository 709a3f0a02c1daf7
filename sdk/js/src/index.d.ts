/// <reference path="./context.d.ts" />
// Types of @jobhost/sdk (./index.js).
import type { Level } from 'jobhost:plugin/context@0.1.0';

export type { Level };

/** Any value JSON.stringify can encode. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json | undefined } | { toJSON(): unknown };

/** The log levels of the host, least severe first. */
export const LEVELS: readonly Level[];

/**
 * An expected failure: the job's error is its message alone (no `Error: `
 * prefix) and no stack is logged. Like `Error::msg` in the Rust SDK.
 */
export class JobError extends Error {
  constructor(message?: string, options?: { cause?: unknown });
  name: 'JobError';
}

/** The shape of the component's `run` export: JSON args in, JSON result out; errors thrown as strings. */
export type Run = (args: string) => string | Promise<string>;

/**
 * Wraps a job function into the `run` export of a plugin:
 * `export const run = job((args) => result)`.
 *
 * The args are the enqueued JSON, decoded (invalid JSON fails the job with
 * `invalid args: ...`). The return value, or what a returned promise resolves
 * to, is JSON-encoded as the result (`undefined` is `null`). Anything thrown
 * fails the job as `plugin_error` and never traps: a string is the message,
 * a JobError its message, any other Error `Name: message` with its stack
 * logged at error level.
 */
export function job<A = any, R = unknown>(fn: (args: A) => R | Promise<R>): Run;

/** Appends a line to the job log; values that are not strings are formatted like console.log. */
export function log(level: Level, ...message: unknown[]): void;
export function trace(...message: unknown[]): void;
export function debug(...message: unknown[]): void;
export function info(...message: unknown[]): void;
export function warn(...message: unknown[]): void;
export function error(...message: unknown[]): void;

/** Reports progress in percent (the host clamps it to 0..=100, NaN is 0), with an optional message. */
export function progress(percent: number, message?: string | null): void;

/**
 * Attaches `value`, JSON-encoded, to the job under `key`.
 * @throws TypeError if the value is not JSON-serialisable, JobError if the host refuses it (over 64 KiB).
 */
export function setMetadata(key: string, value: unknown): void;

/** True once cancellation was requested: return early, e.g. `throw new JobError('cancelled')`. */
export function isCancelled(): boolean;

/** The id of the job being run (a UUID), the same across attempts. */
export function jobId(): string;

/** The attempt number: 1 for the first run, 2 for the first retry, ... */
export function attempt(): number;

/** Waits `ms` milliseconds on the event loop, burning no fuel: `await sleep(100)` in an async job. */
export function sleep(ms: number): Promise<void>;
