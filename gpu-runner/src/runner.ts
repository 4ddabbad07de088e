// The runner loop: long-poll for a lease, keep it alive with heartbeats from a main-thread timer
// (the engine runs in a worker thread, so a long onnxruntime call never delays a heartbeat), run
// the job, report its outcome. Cancel and pause requests arrive with heartbeat answers: the timer's
// and the one the job sends after every step (`control.poll`), so they take effect after the step
// that is running when they arrive, however long the heartbeat period.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Lease } from '@cgrpo/contract';
import { ApiError, RunnerApi, sleep } from './api-client';
import type { JobContext, JobControl, JobExecutor, JobOutcome, StopReason } from './job/types';
import type { Logger } from './log';
import { Reporter } from './reporter';

export interface RunnerOptions {
  api: string;
  token: string;
  labels: string[];
  capabilities: string[];
  device: 'auto' | 'cpu' | 'cuda';
  workDir: string;
  maxJobs: number;
  modelDirs: string[];
  log: Logger;
  executor: JobExecutor;
  /** Long-poll wait per lease request, seconds. */
  leaseWaitSeconds?: number;
  /** Stop after this many jobs (tests, one-shot runs); unlimited by default. */
  exitAfterJobs?: number;
  /** How long finished jobs wait for buffered reports to reach the API. */
  drainTimeoutMs?: number;
  /** onnxruntime intra-op threads per job (`--threads`); undefined: onnxruntime's default. */
  threads?: number;
  /** Disk the outbox of a job may fill with rollouts and checkpoints before training waits. */
  outboxBudgetBytes?: number;
}

/** How long the after-step poll waits for the API's answer (only while the API answers at all). */
const POLL_WAIT_MS = 1000;

export class Runner {
  private readonly api: RunnerApi;
  private readonly shutdown = new AbortController();
  private jobsDone = 0;
  private readonly running = new Set<{ stop: (r: StopReason) => void }>();

  constructor(private readonly o: RunnerOptions) {
    this.api = new RunnerApi({ baseUrl: o.api, token: o.token, log: o.log });
  }

  /** Asks running jobs to checkpoint and hand their lease back; stops leasing. */
  requestShutdown(): void {
    if (this.shutdown.signal.aborted) return;
    this.o.log.info('shutting down: running jobs stop at their next safe point');
    this.shutdown.abort();
    for (const j of this.running) j.stop('shutdown');
  }

  async run(): Promise<void> {
    mkdirSync(this.o.workDir, { recursive: true });
    this.o.log.info('runner started', {
      api: this.o.api,
      labels: this.o.labels,
      device: this.o.device,
      max_jobs: this.o.maxJobs,
      work_dir: this.o.workDir,
    });
    const slots = Array.from({ length: this.o.maxJobs }, (_, i) => this.slot(i));
    await Promise.all(slots);
    this.o.log.info('runner stopped', { jobs: this.jobsDone });
  }

  private async slot(index: number): Promise<void> {
    let failures = 0;
    while (!this.shutdown.signal.aborted && !this.enoughJobs()) {
      let lease: Lease | null;
      try {
        lease = await this.api.lease(
          {
            wait_seconds: this.o.leaseWaitSeconds ?? 20,
            labels: this.o.labels,
            capabilities: this.o.capabilities,
          },
          this.shutdown.signal,
        );
        failures = 0;
      } catch (e) {
        if (this.shutdown.signal.aborted) break;
        failures++;
        const delay = Math.min(30_000, 1000 * 2 ** Math.min(failures, 5));
        this.o.log.warn('lease request failed; retrying', {
          slot: index,
          error: message(e),
          retry_in_ms: delay,
        });
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
          this.o.log.error('the API refused this runner token; register again (cgrpo-runner register)');
          this.requestShutdown();
          break;
        }
        await sleep(delay, this.shutdown.signal);
        continue;
      }
      if (!lease) continue;
      await this.runJob(lease);
      this.jobsDone++;
    }
    if (this.enoughJobs()) this.shutdown.abort();
  }

  private enoughJobs(): boolean {
    return this.o.exitAfterJobs !== undefined && this.jobsDone >= this.o.exitAfterJobs;
  }

  /** Runs one leased job to an outcome the API hears about (unless the lease is lost). */
  async runJob(lease: Lease): Promise<void> {
    const log = this.o.log.child({ job: lease.job_id, attempt: lease.attempt });
    const workDir = join(this.o.workDir, lease.job_id);
    const reporter = new Reporter({
      api: this.api,
      jobId: lease.job_id,
      leaseId: lease.lease_id,
      attempt: lease.attempt,
      dir: workDir,
      log,
      ...(this.o.outboxBudgetBytes ? { budgetBytes: this.o.outboxBudgetBytes } : {}),
    });
    const lost = new AbortController();
    let stop: StopReason | null = null;
    let step: number | undefined;
    let note: string | undefined;
    const handle = {
      stop: (r: StopReason) => {
        // a user's cancel wins over a pause or a shutdown
        if (stop !== 'cancel') stop = r;
      },
    };
    this.running.add(handle);
    const control: JobControl = {
      stopRequest: () => stop,
      signal: lost.signal,
      progress: (s, m) => {
        step = s;
        note = m;
      },
      poll: async () => {}, // set below, once the heartbeat exists
    };

    // the API answered the last heartbeat: the after-step poll may wait a moment for its answer
    let reachable = true;
    let inFlight: Promise<void> | null = null;
    const beat = async () => {
      try {
        const hb = await this.api.heartbeat(lease.job_id, { lease_id: lease.lease_id, step, message: note });
        if (hb.cancel_requested && stop !== 'cancel') {
          log.info('cancel requested');
          handle.stop('cancel');
        } else if (hb.pause_requested && stop === null) {
          log.info('pause requested');
          handle.stop('pause');
        }
        reachable = true;
      } catch (e) {
        const wasReachable = reachable;
        reachable = !(e instanceof ApiError && e.code === 'api_unreachable');
        if (e instanceof ApiError && (e.code === 'lease_lost' || e.status === 409 || e.status === 404)) {
          log.warn('lease lost: another runner owns this job now; stopping without reporting', {
            error: e.message,
          });
          lost.abort();
          reporter.leaseLost = true;
        } else {
          // once per outage at warn (a heartbeat goes out after every step)
          (wasReachable ? log.warn : log.debug).call(
            log,
            'heartbeat failed (the lease lasts until it expires)',
            {
              error: message(e),
            },
          );
        }
      }
    };
    /** One heartbeat at a time: the timer's and the after-step poll share it. */
    const beatOnce = (): Promise<void> => {
      inFlight ??= beat().finally(() => {
        inFlight = null;
      });
      return inFlight;
    };
    control.poll = async () => {
      const answer = beatOnce();
      // while the API is down the answer is not awaited: training never waits on it
      if (reachable) await Promise.race([answer, sleep(POLL_WAIT_MS)]);
    };
    const heartbeat = setInterval(
      () => void beatOnce(),
      Math.max(1, lease.heartbeat_interval_seconds) * 1000,
    );
    reporter.start();
    log.info('job leased', {
      name: lease.spec.name,
      model: lease.spec.model.id,
      resume_from_step: lease.resume_from?.step ?? null,
      last_step: lease.last_step,
    });

    const ctx: JobContext = {
      lease,
      api: this.api,
      reporter,
      control,
      log,
      workDir,
      device: this.o.device,
      modelDirs: this.o.modelDirs,
      ...(this.o.threads ? { threads: this.o.threads } : {}),
    };
    let outcome: JobOutcome;
    let cleanUp = false;
    let ended: string | undefined;
    try {
      outcome = await this.o.executor(ctx);
    } catch (e) {
      outcome = { status: 'failed', code: 'runner_internal_error', message: message(e), retryable: true };
      log.error('job executor crashed', {
        error: message(e),
        stack: e instanceof Error ? e.stack : undefined,
      });
    }
    try {
      if (lost.signal.aborted) return;
      ended = await this.finish(ctx, outcome);
      // a job that will not come back to this runner needs none of its downloads or checkpoints
      cleanUp =
        (outcome.status === 'succeeded' && ended !== 'paused') ||
        (outcome.status === 'stopped' && outcome.reason === 'cancel') ||
        (outcome.status === 'failed' && !outcome.retryable);
    } catch (e) {
      log.error('could not report the job outcome; the lease will expire and the job will be requeued', {
        error: message(e),
      });
    } finally {
      clearInterval(heartbeat);
      reporter.stop();
      this.running.delete(handle);
      if (cleanUp) rmSync(workDir, { recursive: true, force: true });
    }
  }

  /** Reports the outcome; returns the job's status as the API recorded it. */
  private async finish(ctx: JobContext, outcome: JobOutcome): Promise<string> {
    const { lease, reporter, log } = ctx;
    const job = lease.job_id;
    const lease_id = lease.lease_id;
    // reports first: a job is only complete once every metric point is stored
    await reporter.drain(this.o.drainTimeoutMs ?? 10 * 60_000);
    switch (outcome.status) {
      case 'succeeded': {
        const state = await this.api.complete(job, {
          lease_id,
          summary: outcome.summary,
          ...(outcome.finalCheckpointId ? { final_checkpoint_id: outcome.finalCheckpointId } : {}),
        });
        // a cancel or pause that arrived during the last step wins over success
        if (state.status === 'succeeded') log.info('job succeeded', outcome.summary);
        else log.info(`job ${state.status} after its last step`, { checkpoint: outcome.finalCheckpointId });
        return state.status;
      }
      case 'stopped':
        if (outcome.reason === 'shutdown') {
          await this.api.fail(job, {
            lease_id,
            retryable: true,
            error: {
              code: 'runner_shutdown',
              message: 'the runner was stopped; the job resumes from its latest checkpoint',
            },
          });
          log.info('job handed back for another runner', {
            checkpoint: outcome.checkpointId ?? reporter.latestCheckpoint?.id,
          });
          return 'queued';
        }
        await this.api.ack(job, { lease_id, action: outcome.reason === 'cancel' ? 'cancelled' : 'paused' });
        log.info(outcome.reason === 'cancel' ? 'job cancelled' : 'job paused', {
          checkpoint: outcome.checkpointId ?? reporter.latestCheckpoint?.id,
        });
        return outcome.reason === 'cancel' ? 'cancelled' : 'paused';
      case 'failed':
        await this.api.fail(job, {
          lease_id,
          retryable: outcome.retryable,
          error: { code: outcome.code, message: outcome.message.slice(0, 4000) },
        });
        log.error('job failed', { code: outcome.code, error: outcome.message, retryable: outcome.retryable });
        return outcome.retryable ? 'queued' : 'failed';
    }
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
