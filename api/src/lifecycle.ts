import type { Job, JobEventType, JobSpec, JobStatus } from '@cgrpo/contract';
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { SQLiteUpdateSetSource } from 'drizzle-orm/sqlite-core';
import { type JobRow, jobs } from './db/schema';
import type { Db, Env } from './env';
import { ApiError, notFound } from './errors';
import { type JobRef, recordJobEvent } from './events';
import { iso } from './ids';
import { limits } from './limits';

// The job lifecycle. Each transition is ONE conditional UPDATE (`WHERE status IN (...)`, and for
// runner calls `AND lease_id = ?`), so two requests racing on one job can never both win; the
// winner then records the event. A transition that finds the job in another state re-reads it and
// answers from what it sees.

export function jobRef(row: JobRow): JobRef {
  return { id: row.id, accountId: row.accountId, attempt: row.attempt };
}

export function toJob(row: JobRow): Job {
  return { ...toJobSummary(row), spec: JSON.parse(row.spec) as JobSpec };
}

export function toJobSummary(row: JobRow): Omit<Job, 'spec'> {
  return {
    id: row.id,
    name: row.name,
    status: row.status as JobStatus,
    algorithm: row.algorithm,
    attempt: row.attempt,
    retries: row.retries,
    cancel_requested: row.cancelRequested,
    pause_requested: row.pauseRequested,
    runner_id: row.runnerId,
    lease_expires_at: iso(row.leaseExpiresAt),
    current_step: row.currentStep,
    total_steps: row.totalSteps,
    error: row.errorCode ? { code: row.errorCode, message: row.errorMessage ?? '' } : null,
    created_at: iso(row.createdAt)!,
    updated_at: iso(row.updatedAt)!,
    started_at: iso(row.startedAt),
    finished_at: iso(row.finishedAt),
  };
}

export async function getAccountJob(db: Db, accountId: string, jobId: string): Promise<JobRow> {
  const row = await db
    .select()
    .from(jobs)
    .where(and(eq(jobs.id, jobId), eq(jobs.accountId, accountId)))
    .get();
  if (!row) throw notFound(`job ${jobId}`);
  return row;
}

const finished = (status: string) => status === 'succeeded' || status === 'failed' || status === 'cancelled';

/** UPDATE jobs SET … WHERE id = ? AND status IN (from) [AND extra] RETURNING *: the row if it moved. */
async function transition(
  db: Db,
  jobId: string,
  from: JobStatus[],
  set: SQLiteUpdateSetSource<typeof jobs>,
  extra?: ReturnType<typeof sql>,
): Promise<JobRow | undefined> {
  const where = and(eq(jobs.id, jobId), inArray(jobs.status, from), extra);
  const rows = await db
    .update(jobs)
    .set({ ...set, updatedAt: Date.now() })
    .where(where)
    .returning();
  return rows[0];
}

async function moved(
  db: Db,
  env: Env,
  row: JobRow | undefined,
  type: JobEventType,
  data: Record<string, unknown> = {},
) {
  if (row) await recordJobEvent(db, env, jobRef(row), type, data);
  return row;
}

const clearLease = { leaseId: null, leaseExpiresAt: null } as const;

/** User cancel: queued/paused jobs are cancelled at once; a running job goes to `cancelling` until its runner acks. */
export async function requestCancel(db: Db, env: Env, job: JobRow): Promise<JobRow> {
  for (let tries = 0; tries < 3; tries++) {
    if (finished(job.status)) {
      throw new ApiError(409, 'job_finished', `job ${job.id} already ${job.status}; nothing to cancel`);
    }
    if (job.status === 'cancelling') return job;
    const now = Date.now();
    const row =
      job.status === 'running'
        ? await moved(
            db,
            env,
            await transition(db, job.id, ['running'], { status: 'cancelling', cancelRequested: true }),
            'job.cancel_requested',
          )
        : await moved(
            db,
            env,
            await transition(db, job.id, ['queued', 'paused'], {
              status: 'cancelled',
              cancelRequested: true,
              finishedAt: now,
              ...clearLease,
            }),
            'job.cancelled',
            { reason: 'cancelled by user' },
          );
    if (row) return row;
    job = await getAccountJob(db, job.accountId, job.id);
  }
  throw new ApiError(409, 'job_busy', 'the job changed state during the request; retry');
}

/** User pause: a queued job pauses at once; a running one is asked to checkpoint and stop (heartbeat). */
export async function requestPause(db: Db, env: Env, job: JobRow): Promise<JobRow> {
  for (let tries = 0; tries < 3; tries++) {
    if (job.status === 'paused' || (job.status === 'running' && job.pauseRequested)) return job;
    if (job.status !== 'queued' && job.status !== 'running') {
      throw new ApiError(
        409,
        'job_not_pausable',
        `job ${job.id} is ${job.status}; only queued or running jobs pause`,
      );
    }
    const row =
      job.status === 'running'
        ? await moved(
            db,
            env,
            await transition(
              db,
              job.id,
              ['running'],
              { pauseRequested: true },
              sql`${jobs.pauseRequested} = 0`,
            ),
            'job.pause_requested',
          )
        : await moved(db, env, await transition(db, job.id, ['queued'], { status: 'paused' }), 'job.paused');
    if (row) return row;
    job = await getAccountJob(db, job.accountId, job.id);
  }
  throw new ApiError(409, 'job_busy', 'the job changed state during the request; retry');
}

/** Resume: a paused job is queued again (the next lease resumes from its latest checkpoint). */
export async function requestResume(db: Db, env: Env, job: JobRow): Promise<JobRow> {
  for (let tries = 0; tries < 3; tries++) {
    const row =
      job.status === 'paused'
        ? await transition(db, job.id, ['paused'], { status: 'queued', pauseRequested: false })
        : job.status === 'running' && job.pauseRequested
          ? await transition(db, job.id, ['running'], { pauseRequested: false })
          : undefined;
    if (job.status !== 'paused' && !(job.status === 'running' && job.pauseRequested)) {
      if (job.status === 'queued' || job.status === 'running') return job;
      throw new ApiError(409, 'job_not_paused', `job ${job.id} is ${job.status}; only paused jobs resume`);
    }
    if (row) {
      await recordJobEvent(db, env, jobRef(row), 'job.resumed');
      return row;
    }
    job = await getAccountJob(db, job.accountId, job.id);
  }
  throw new ApiError(409, 'job_busy', 'the job changed state during the request; retry');
}

const leaseIs = (leaseId: string) => sql`${jobs.leaseId} = ${leaseId}`;

function leaseLost(jobId: string): ApiError {
  return new ApiError(
    409,
    'lease_lost',
    `this runner no longer holds the lease on job ${jobId}; stop working on it`,
  );
}

/** Runner ack of a cancel or pause request. */
export async function ackJob(
  db: Db,
  env: Env,
  jobId: string,
  leaseId: string,
  action: 'cancelled' | 'paused',
) {
  const now = Date.now();
  const row =
    action === 'cancelled'
      ? await moved(
          db,
          env,
          await transition(
            db,
            jobId,
            ['running', 'cancelling'],
            { status: 'cancelled', finishedAt: now, ...clearLease },
            leaseIs(leaseId),
          ),
          'job.cancelled',
          { reason: 'cancelled by user' },
        )
      : await moved(
          db,
          env,
          await transition(
            db,
            jobId,
            ['running'],
            { status: 'paused', pauseRequested: false, ...clearLease },
            sql`${jobs.leaseId} = ${leaseId} AND ${jobs.pauseRequested} = 1`,
          ),
          'job.paused',
        );
  if (!row) throw leaseLost(jobId);
  return row;
}

/**
 * The runner finished the last step. A job with a pending cancel or pause cannot succeed: a
 * `cancelling` job ends `cancelled`, a job with a pending pause ends `paused` (its final checkpoint
 * is the resume point; the next lease resumes at the end and completes at once). Only a running
 * job with neither request succeeds.
 */
export async function completeJob(
  db: Db,
  env: Env,
  jobId: string,
  leaseId: string,
  data: Record<string, unknown>,
) {
  const now = Date.now();
  const succeeded = await moved(
    db,
    env,
    await transition(
      db,
      jobId,
      ['running'],
      { status: 'succeeded', finishedAt: now, ...clearLease },
      sql`${jobs.leaseId} = ${leaseId} AND ${jobs.pauseRequested} = 0 AND ${jobs.cancelRequested} = 0`,
    ),
    'job.succeeded',
    data,
  );
  if (succeeded) return succeeded;
  const cancelled = await moved(
    db,
    env,
    await transition(
      db,
      jobId,
      ['running', 'cancelling'],
      { status: 'cancelled', finishedAt: now, ...clearLease },
      sql`${jobs.leaseId} = ${leaseId} AND (${jobs.status} = 'cancelling' OR ${jobs.cancelRequested} = 1)`,
    ),
    'job.cancelled',
    { reason: 'cancelled by user; the request arrived before the last step ended' },
  );
  if (cancelled) return cancelled;
  const paused = await moved(
    db,
    env,
    await transition(
      db,
      jobId,
      ['running'],
      { status: 'paused', pauseRequested: false, ...clearLease },
      sql`${jobs.leaseId} = ${leaseId} AND ${jobs.pauseRequested} = 1`,
    ),
    'job.paused',
    { reason: 'the pause request arrived before the last step ended; resume completes the job' },
  );
  if (paused) return paused;
  throw leaseLost(jobId);
}

/** Runner failure: retryable ones are requeued while retries remain; the rest fail the job. */
export async function failJob(
  db: Db,
  env: Env,
  jobId: string,
  leaseId: string,
  error: { code: string; message: string },
  retryable: boolean,
) {
  const max = limits(env).maxJobRetries;
  if (retryable) {
    const requeued = await transition(
      db,
      jobId,
      ['running'],
      { status: 'queued', retries: sql`${jobs.retries} + 1`, runnerId: null, ...clearLease },
      sql`${jobs.leaseId} = ${leaseId} AND ${jobs.retries} < ${max} AND ${jobs.cancelRequested} = 0`,
    );
    if (requeued) {
      await recordJobEvent(db, env, jobRef(requeued), 'job.requeued', {
        reason: 'runner failure',
        error,
        retryable,
      });
      return requeued;
    }
  }
  const reason = retryable ? `${error.message} (gave up after ${max} retries)` : error.message;
  const row = await transition(
    db,
    jobId,
    ['running', 'cancelling'],
    { status: 'failed', finishedAt: Date.now(), errorCode: error.code, errorMessage: reason, ...clearLease },
    leaseIs(leaseId),
  );
  if (!row) throw leaseLost(jobId);
  await recordJobEvent(db, env, jobRef(row), 'job.failed', { error: { code: error.code, message: reason } });
  return row;
}

/** Heartbeat: extends the lease if this runner still holds it, and passes on cancel/pause requests. */
export async function heartbeat(db: Db, env: Env, jobId: string, leaseId: string, step: number | undefined) {
  const expires = Date.now() + limits(env).leaseSeconds * 1000;
  const row = await transition(
    db,
    jobId,
    ['running', 'cancelling'],
    {
      leaseExpiresAt: expires,
      ...(step !== undefined ? { currentStep: sql`MAX(COALESCE(${jobs.currentStep}, 0), ${step})` } : {}),
    },
    leaseIs(leaseId),
  );
  if (!row) throw leaseLost(jobId);
  return row;
}

/** Checks that a runner still holds a job's lease (for event/metric/checkpoint calls). */
export async function requireLease(
  db: Db,
  accountId: string,
  jobId: string,
  leaseId: string,
): Promise<JobRow> {
  const row = await db
    .select()
    .from(jobs)
    .where(and(eq(jobs.id, jobId), eq(jobs.accountId, accountId)))
    .get();
  if (!row) throw notFound(`job ${jobId}`);
  if (row.leaseId !== leaseId || (row.status !== 'running' && row.status !== 'cancelling'))
    throw leaseLost(jobId);
  return row;
}

/**
 * Cron: every lease past its expiry is released in one UPDATE per outcome. A job with retries left
 * goes back to `queued` (the next lease is attempt + 1 and resumes from the latest checkpoint); a
 * job out of retries fails with the reason; a job that was being cancelled is simply cancelled.
 */
export async function expireLeases(
  db: Db,
  env: Env,
  now = Date.now(),
): Promise<{ requeued: number; failed: number; cancelled: number }> {
  const max = limits(env).maxJobRetries;
  const expired = sql`${jobs.leaseExpiresAt} < ${now}`;
  const cancelled = await db
    .update(jobs)
    .set({ status: 'cancelled', finishedAt: now, updatedAt: now, ...clearLease })
    .where(and(eq(jobs.status, 'cancelling'), expired))
    .returning();
  for (const row of cancelled) {
    await recordJobEvent(db, env, jobRef(row), 'job.lease_expired', { runner_id: row.runnerId });
    await recordJobEvent(db, env, jobRef(row), 'job.cancelled', {
      reason: 'cancelled by user; the runner stopped responding',
    });
  }
  const requeued = await db
    .update(jobs)
    .set({
      status: 'queued',
      retries: sql`${jobs.retries} + 1`,
      runnerId: null,
      updatedAt: now,
      ...clearLease,
    })
    .where(and(eq(jobs.status, 'running'), expired, sql`${jobs.retries} < ${max}`))
    .returning();
  for (const row of requeued) {
    await recordJobEvent(db, env, jobRef(row), 'job.lease_expired', {});
    await recordJobEvent(db, env, jobRef(row), 'job.requeued', {
      reason: 'lease expired',
      retries: row.retries,
    });
  }
  const message = `the runner stopped sending heartbeats and the lease expired ${max + 1} times; check the runners, then resubmit`;
  const failed = await db
    .update(jobs)
    .set({
      status: 'failed',
      finishedAt: now,
      updatedAt: now,
      errorCode: 'lease_expired',
      errorMessage: message,
      ...clearLease,
    })
    .where(and(eq(jobs.status, 'running'), expired))
    .returning();
  for (const row of failed) {
    await recordJobEvent(db, env, jobRef(row), 'job.lease_expired', {});
    await recordJobEvent(db, env, jobRef(row), 'job.failed', { error: { code: 'lease_expired', message } });
  }
  return { requeued: requeued.length, failed: failed.length, cancelled: cancelled.length };
}
