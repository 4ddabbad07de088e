// What the runner hands a job executor and what it gets back. The executor never talks to the
// lease itself: it reports through the Reporter and checks `control` at every safe point.
import type { Lease } from '@cgrpo/contract';
import type { RunnerApi } from '../api-client';
import type { Logger } from '../log';
import type { Reporter } from '../reporter';

/** Why a job stops before its last step: the user cancelled or paused it, or the runner is shutting down. */
export type StopReason = 'cancel' | 'pause' | 'shutdown';

export interface JobControl {
  /** The pending stop request, checked after every training step. */
  stopRequest(): StopReason | null;
  /** Aborted when the lease is lost (another runner owns the job now): stop at once, report nothing. */
  readonly signal: AbortSignal;
  /** The step being worked on, sent with the next heartbeat. */
  progress(step: number, message?: string): void;
  /**
   * Asks the API now whether a cancel or pause is pending (called after every step, whatever the
   * heartbeat period). Waits briefly for the answer while the API answers; never while it is down.
   */
  poll(): Promise<void>;
}

export type JobOutcome =
  | { status: 'succeeded'; finalCheckpointId?: string; summary: Record<string, unknown> }
  /** Stopped at a safe point after writing a checkpoint. */
  | { status: 'stopped'; reason: StopReason; checkpointId?: string }
  | { status: 'failed'; code: string; message: string; retryable: boolean };

export interface JobContext {
  lease: Lease;
  api: RunnerApi;
  reporter: Reporter;
  control: JobControl;
  log: Logger;
  /** A folder for this job on this runner (downloads, checkpoints, the outbox). */
  workDir: string;
  device: 'auto' | 'cpu' | 'cuda';
  /** Folders searched for a model id (`<dir>/<id>` and `<dir>/<last segment of id>`). */
  modelDirs: string[];
  /** onnxruntime intra-op threads (`--threads`); undefined: onnxruntime's default (physical cores). */
  threads?: number;
}

export type JobExecutor = (ctx: JobContext) => Promise<JobOutcome>;

/** A failure with a code the user can act on; the executor turns it into a `failed` outcome. */
export class JobError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable = false,
  ) {
    super(message);
    this.name = 'JobError';
  }
}
