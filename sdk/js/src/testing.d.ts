// Types of ./testing.js, the mock host for unit tests under Node
// (`node --import ./jobhost/register.js --test`).
import type { Level, Run } from './index.js';

export interface MockOptions {
  /** Default `00000000-0000-4000-8000-000000000000`. */
  jobId?: string;
  /** Default 1. */
  attempt?: number;
  /** Cancellation already requested. */
  cancelled?: boolean;
  /** `isCancelled()` answers false this many times, then true (cancellation requested then). */
  cancelAfter?: number;
  /** Print log lines and progress to stderr as they come (also `JOBHOST_MOCK_ECHO=1`). */
  echo?: boolean;
}

export interface LogLine {
  level: Level;
  message: string;
  /** True for console output (stdout is logged at info, stderr at error). */
  console?: true;
}

export interface ProgressReport {
  /** Clamped to 0..=100 as the host does. */
  percent: number;
  message: string | null;
}

export interface Records {
  logs: LogLine[];
  progress: ProgressReport[];
  metadata: Record<string, unknown>;
  cancelChecks: number;
}

export type Outcome<R = any> = Records &
  (
    | { status: 'completed'; result: string; value: R; kind?: undefined; message?: undefined }
    | { status: 'failed'; kind: 'plugin_error' | 'cancelled' | 'trap'; message: string; result?: undefined; value?: undefined }
  );

/** Calls a `run` export as the host does, in a fresh mock context (see MockOptions). */
export function invoke<R = any>(run: Run, args?: unknown, options?: MockOptions): Promise<Outcome<R>>;

export function reset(options?: MockOptions): void;
export function cancel(): void;
export function logs(): LogLine[];
export function progressReports(): ProgressReport[];
export function metadata(): Record<string, unknown>;
export function cancelChecks(): number;
