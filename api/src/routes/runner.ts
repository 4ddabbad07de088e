import {
  AckJobSchema,
  BatchResultSchema,
  CheckpointCompleteSchema,
  CheckpointInitResponseSchema,
  CheckpointInitSchema,
  CheckpointSchema,
  CompleteJobSchema,
  EventsBatchSchema,
  FailJobSchema,
  HeartbeatRequestSchema,
  HeartbeatResponseSchema,
  type JobSpec,
  type Lease,
  LeaseRequestSchema,
  LeaseSchema,
  LeaseStateSchema,
  MetricsBatchSchema,
  PartUploadResponseSchema,
  pluginUsesOf,
  type ResolvedPlugin,
  RUNNER_REGISTRATION_KEY_PREFIX,
  RUNNER_TOKEN_PREFIX,
  RunnerRegisterRequestSchema,
  RunnerRegisterResponseSchema,
} from '@cgrpo/contract';
import { createRoute } from '@hono/zod-openapi';
import { and, desc, eq, isNull, sql } from 'drizzle-orm';
import type { Context } from 'hono';
import { z } from 'zod';
import { requireRunner, runnerOf } from '../auth';
import { checkJobHealth } from '../budgets';
import { insertIgnoringDuplicates } from '../bulk';
import {
  apiKeys,
  checkpoints,
  type JobRow,
  jobs,
  metricPoints,
  plugins,
  rollouts,
  runners,
} from '../db/schema';
import type { AppEnv, Db } from '../env';
import { ApiError, conflict, invalid, notFound } from '../errors';
import { recordJobEvent } from '../events';
import { iso, newId, newSecret, sha256Hex } from '../ids';
import { ackJob, completeJob, failJob, getAccountJob, heartbeat, jobRef, requireLease } from '../lifecycle';
import { limits } from '../limits';
import {
  bearerSecurity,
  binaryBody,
  binaryResponse,
  conflictError,
  errors,
  json,
  jsonBody,
  router,
} from '../openapi';
import { readStoredManifest } from '../plugin-manifest';
import { parsePluginRef } from '../spec-checks';
import {
  publishCheckpointCreated,
  publishMetricsDigests,
  publishRunnerEventWebhooks,
} from '../webhooks/job-events';
import { artifactContent, getAccountArtifact, uploadPart } from './artifacts';
import { downloadCheckpoint, toCheckpoint } from './jobs';
import { bundleResponse } from './plugins';

// The runner protocol (/v1/runner/*). A runner registers with an account's registration key and
// gets a runner token valid only here. It leases one job at a time (long-poll; atomic), keeps the
// lease alive with heartbeats, reports events and metrics idempotently, uploads checkpoints part
// by part, and ends the job with complete or fail. Every job-scoped call names its lease.

export const runnerRouter = router();
const tags = ['runner protocol'];

runnerRouter.use('*', async (c, next) => {
  if (c.req.path.endsWith('/runner/register')) return next();
  return requireRunner(c, next);
});

runnerRouter.openapi(
  createRoute({
    method: 'post',
    path: '/register',
    tags,
    summary: 'Register a runner with a registration key (cgrpo_rk_…); returns its runner token once',
    security: bearerSecurity,
    request: { body: jsonBody(RunnerRegisterRequestSchema) },
    responses: { 201: json(RunnerRegisterResponseSchema, 'The runner id and token'), ...errors },
  }),
  async (c) => {
    const header = c.req.header('authorization') ?? '';
    const key = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    if (!key)
      throw new ApiError(401, 'unauthenticated', "missing 'Authorization: Bearer <registration key>' header");
    if (!key.startsWith(RUNNER_REGISTRATION_KEY_PREFIX)) {
      throw new ApiError(
        401,
        'unauthenticated',
        'runners register with a registration key (cgrpo_rk_…), not an API key',
      );
    }
    const db = c.get('db');
    const registration = await db
      .select()
      .from(apiKeys)
      .where(
        and(
          eq(apiKeys.hash, await sha256Hex(key)),
          eq(apiKeys.kind, 'registration'),
          isNull(apiKeys.revokedAt),
        ),
      )
      .get();
    if (!registration)
      throw new ApiError(401, 'unauthenticated', 'the registration key is invalid or revoked');
    const body = c.req.valid('json');
    const token = newSecret(RUNNER_TOKEN_PREFIX);
    const id = newId('run');
    const now = Date.now();
    await db
      .insert(runners)
      .values({
        id,
        accountId: registration.accountId,
        name: body.name,
        labels: body.labels,
        capabilities: body.capabilities,
        version: body.version,
        tokenHash: await sha256Hex(token),
        createdAt: now,
        lastSeenAt: now,
      })
      .run();
    await db.update(apiKeys).set({ lastUsedAt: now }).where(eq(apiKeys.id, registration.id)).run();
    return c.json({ runner_id: id, token }, 201);
  },
);

// ---- lease ------------------------------------------------------------------------------------

/**
 * One conditional UPDATE picks the oldest queued job of the account whose labels and required
 * capabilities the runner has, and claims it; concurrent leases serialize on the row, so a job
 * is never given to two runners.
 */
async function tryLease(
  d1: D1Database,
  accountId: string,
  runnerId: string,
  labels: string[],
  capabilities: string[],
  leaseSeconds: number,
): Promise<string | undefined> {
  const now = Date.now();
  const leaseId = newId('lease');
  const row = await d1
    .prepare(
      `UPDATE jobs SET status = 'running', attempt = attempt + 1, runner_id = ?1, lease_id = ?2,
         lease_expires_at = ?3, updated_at = ?4, started_at = COALESCE(started_at, ?4), pause_requested = 0
       WHERE id = (
         SELECT j.id FROM jobs j
         WHERE j.account_id = ?5 AND j.status = 'queued'
           AND NOT EXISTS (SELECT 1 FROM json_each(j.runner_labels) l WHERE l.value NOT IN (SELECT value FROM json_each(?6)))
           AND NOT EXISTS (SELECT 1 FROM json_each(j.required_capabilities) r WHERE r.value NOT IN (SELECT value FROM json_each(?7)))
         ORDER BY j.created_at, j.id LIMIT 1
       ) AND status = 'queued'
       RETURNING id`,
    )
    .bind(
      runnerId,
      leaseId,
      now + leaseSeconds * 1000,
      now,
      accountId,
      JSON.stringify(labels),
      JSON.stringify(capabilities),
    )
    .first<{ id: string }>();
  return row?.id;
}

async function resolvePlugins(db: Db, spec: JobSpec): Promise<ResolvedPlugin[]> {
  const resolved: ResolvedPlugin[] = [];
  for (const { role, use } of pluginUsesOf(spec)) {
    const ref = parsePluginRef(use.plugin);
    const base = { role, ref: use.plugin, config: use.config, grants: use.grants };
    if ('builtin' in ref) {
      resolved.push({ ...base, builtin: true, sha256: null, manifest: null, bundle_url: null });
      continue;
    }
    const row = await db
      .select()
      .from(plugins)
      .where(and(eq(plugins.owner, ref.owner), eq(plugins.name, ref.name), eq(plugins.version, ref.version)))
      .get();
    // a stored manifest that cannot be read is served as a missing plugin (the runner fails that
    // job with plugin_not_found), never as a 500 on lease
    const manifest = row ? readStoredManifest(row.manifest) : null;
    resolved.push({
      ...base,
      builtin: false,
      sha256: manifest && row ? row.sha256 : null,
      manifest,
      bundle_url: manifest && row ? `/v1/runner/bundles/${row.sha256}` : null,
    });
  }
  return resolved;
}

async function leaseFor(c: Context<AppEnv>, row: JobRow): Promise<Lease> {
  const db = c.get('db');
  const spec = JSON.parse(row.spec) as JobSpec;
  const latest = await db
    .select()
    .from(checkpoints)
    .where(and(eq(checkpoints.jobId, row.id), eq(checkpoints.status, 'complete')))
    .orderBy(desc(checkpoints.step), desc(checkpoints.createdAt))
    .limit(1)
    .get();
  const lastStep = await db
    .select({ step: sql<number | null>`MAX(${metricPoints.step})` })
    .from(metricPoints)
    .where(eq(metricPoints.jobId, row.id))
    .get();
  const leaseSeconds = limits(c.env).leaseSeconds;
  return {
    lease_id: row.leaseId!,
    job_id: row.id,
    attempt: row.attempt,
    lease_expires_at: iso(row.leaseExpiresAt)!,
    heartbeat_interval_seconds: Math.max(1, Math.floor(leaseSeconds / 3)),
    lease_seconds: leaseSeconds,
    spec,
    plugins: await resolvePlugins(db, spec),
    resume_from: latest ? toCheckpoint(latest) : null,
    last_step: lastStep?.step ?? null,
  };
}

runnerRouter.openapi(
  createRoute({
    method: 'post',
    path: '/lease',
    tags,
    summary: 'Lease the next job this runner can run (long-poll up to wait_seconds; 204 when none)',
    security: bearerSecurity,
    request: { body: jsonBody(LeaseRequestSchema) },
    responses: {
      200: json(LeaseSchema, 'The lease'),
      204: { description: 'No job within wait_seconds' },
      ...errors,
    },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const body = c.req.valid('json');
    const lim = limits(c.env);
    const deadline = Date.now() + Math.min(body.wait_seconds, lim.maxLeaseWaitSeconds) * 1000;
    const labels = body.labels ?? runner.labels;
    const capabilities = body.capabilities ?? runner.capabilities;
    for (;;) {
      const jobId = await tryLease(
        c.env.DB,
        runner.accountId,
        runner.runnerId,
        labels,
        capabilities,
        lim.leaseSeconds,
      );
      if (jobId) {
        const db = c.get('db');
        const row = (await db.select().from(jobs).where(eq(jobs.id, jobId)).get())!;
        await recordJobEvent(db, c.env, jobRef(row), 'job.started', {
          attempt: row.attempt,
          runner_id: runner.runnerId,
        });
        return c.json(await leaseFor(c, row), 200);
      }
      const left = deadline - Date.now();
      if (left <= 0 || c.req.raw.signal?.aborted) return c.body(null, 204);
      await new Promise((resolve) => setTimeout(resolve, Math.min(1000, left)));
    }
  },
);

// ---- job-scoped calls -------------------------------------------------------------------------

const JobParams = z.object({ id: z.string().min(1).max(100) });

runnerRouter.openapi(
  createRoute({
    method: 'post',
    path: '/jobs/{id}/heartbeat',
    tags,
    summary: 'Extend the lease; the answer carries cancel and pause requests',
    security: bearerSecurity,
    request: { params: JobParams, body: jsonBody(HeartbeatRequestSchema) },
    responses: {
      200: json(HeartbeatResponseSchema, 'The new expiry and pending requests'),
      ...errors,
      ...conflictError,
    },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const { id } = c.req.valid('param');
    const body = c.req.valid('json');
    const db = c.get('db');
    await getAccountJob(db, runner.accountId, id);
    const row = await heartbeat(db, c.env, id, body.lease_id, body.step);
    return c.json(
      {
        lease_expires_at: iso(row.leaseExpiresAt)!,
        cancel_requested: row.cancelRequested || row.status === 'cancelling',
        pause_requested: row.pauseRequested,
      },
      200,
    );
  },
);

/**
 * The condition every batch write of a runner carries: the job is this account's, still leased
 * with this lease id, on this attempt. Checked inside the write, so a lease that expires meanwhile
 * can never let a stale runner's batch in.
 */
function leaseGuard(leaseId: string, accountId?: string) {
  return {
    sql: `EXISTS (SELECT 1 FROM jobs WHERE id = :job_id AND account_id = :account_id AND lease_id = :lease_id
            AND attempt = :attempt AND status IN ('running', 'cancelling'))`,
    params: { lease_id: leaseId, ...(accountId ? { account_id: accountId } : {}) },
  };
}

const jobState = (d1: D1Database, jobId: string) =>
  d1.prepare('SELECT account_id, status, lease_id, attempt FROM jobs WHERE id = ?1').bind(jobId);

/** Explains a batch whose guard failed (nothing was written): not found, lease lost, or wrong attempt. */
function checkBatchLease(
  result: D1Result | undefined,
  accountId: string,
  jobId: string,
  leaseId: string,
  attempt: number,
) {
  const state = result?.results?.[0] as
    | { account_id: string; status: string; lease_id: string | null; attempt: number }
    | undefined;
  if (!state || state.account_id !== accountId) throw notFound(`job ${jobId}`);
  if (state.lease_id !== leaseId || (state.status !== 'running' && state.status !== 'cancelling')) {
    throw conflict('lease_lost', `this runner no longer holds the lease on job ${jobId}; stop working on it`);
  }
  if (state.attempt !== attempt) {
    throw conflict('attempt_mismatch', `the lease is on attempt ${state.attempt}, the batch says ${attempt}`);
  }
}

/** A step event: one per (job, step, type) across attempts (`data.step` set, not a `phase` marker). */
function stepOf(e: { type: string; data?: Record<string, unknown> }): number | null {
  const step = e.data?.step;
  return typeof step === 'number' && e.data?.phase === undefined ? step : null;
}

/**
 * Drops the step events an earlier attempt already stored for the same (step, type): a resumed
 * attempt recomputes the steps after its checkpoint and reports their events again. Earlier
 * attempts can no longer write (their lease is gone), so reading them first cannot race.
 */
async function withoutEarlierStepEvents<E extends { type: string; data?: Record<string, unknown> }>(
  d1: D1Database,
  jobId: string,
  attempt: number,
  events: E[],
): Promise<E[]> {
  const steps = events.map(stepOf).filter((s): s is number => s !== null);
  if (attempt <= 1 || steps.length === 0) return events;
  const { results } = await d1
    .prepare(
      `SELECT type, json_extract(data, '$.step') AS step FROM job_events
       WHERE job_id = ?1 AND attempt < ?2 AND seq IS NOT NULL
         AND json_extract(data, '$.step') BETWEEN ?3 AND ?4 AND json_extract(data, '$.phase') IS NULL`,
    )
    .bind(jobId, attempt, Math.min(...steps), Math.max(...steps))
    .all<{ type: string; step: number }>();
  const stored = new Set(results.map((r) => `${r.type}@${r.step}`));
  return events.filter((e) => {
    const step = stepOf(e);
    return step === null || !stored.has(`${e.type}@${step}`);
  });
}

runnerRouter.openapi(
  createRoute({
    method: 'post',
    path: '/jobs/{id}/events',
    tags,
    summary: 'Report events; idempotent by (job, attempt, seq)',
    security: bearerSecurity,
    request: { params: JobParams, body: jsonBody(EventsBatchSchema) },
    responses: { 200: json(BatchResultSchema, 'How many were new'), ...errors, ...conflictError },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const { id } = c.req.valid('param');
    const body = c.req.valid('json');
    // a step recomputed after a resume reports its step events again: keep the earlier attempt's
    const events = await withoutEarlierStepEvents(c.env.DB, id, body.attempt, body.events);
    const { inserted: accepted, after } = await insertIgnoringDuplicates(
      c.env.DB,
      'job_events',
      ['job_id', 'account_id', 'attempt', 'created_at', 'seq', 'type', 'data'],
      { job_id: id, account_id: runner.accountId, attempt: body.attempt, created_at: Date.now() },
      events.map((e) => ({ seq: e.seq, type: e.type, data: JSON.stringify(e.data) })),
      { guard: leaseGuard(body.lease_id), after: [jobState(c.env.DB, id)] },
    );
    checkBatchLease(after[0], runner.accountId, id, body.lease_id, body.attempt);
    // Runner-reported webhook events (job.evaluated) fan out too, idempotently (ids from job, attempt, seq).
    await publishRunnerEventWebhooks(
      c.env,
      { id, accountId: runner.accountId, attempt: body.attempt },
      events,
    );
    return c.json({ accepted, duplicates: body.events.length - accepted }, 200);
  },
);

runnerRouter.openapi(
  createRoute({
    method: 'post',
    path: '/jobs/{id}/metrics',
    tags,
    summary: 'Report metric points; one row per (job, attempt, step), a repeated step is ignored',
    security: bearerSecurity,
    request: { params: JobParams, body: jsonBody(MetricsBatchSchema) },
    responses: { 200: json(BatchResultSchema, 'How many were new'), ...errors, ...conflictError },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const { id } = c.req.valid('param');
    const body = c.req.valid('json');
    const seen = new Set<number>();
    const points = body.points.filter((p) => !seen.has(p.step) && seen.add(p.step));
    const maxStep = Math.max(...points.map((p) => p.step));
    const { inserted: accepted, after } = await insertIgnoringDuplicates(
      c.env.DB,
      'metric_points',
      ['job_id', 'attempt', 'created_at', 'step', 'values'],
      { job_id: id, attempt: body.attempt, created_at: Date.now() },
      points.map((p) => ({ step: p.step, values: JSON.stringify(p.values) })),
      {
        guard: leaseGuard(body.lease_id, runner.accountId),
        after: [
          c.env.DB.prepare(
            'UPDATE jobs SET current_step = MAX(COALESCE(current_step, 0), ?1) WHERE id = ?2 AND lease_id = ?3',
          ).bind(maxStep, id, body.lease_id),
          jobState(c.env.DB, id),
        ],
      },
    );
    checkBatchLease(after[1], runner.accountId, id, body.lease_id, body.attempt);
    // budgets and health alarms over the stored points (records events, may request a pause)
    if (accepted > 0) await checkJobHealth(c.get('db'), c.env, id);
    // job.metrics_digest for each window this batch completes; a batch sent again publishes nothing new
    await publishMetricsDigests(
      c.env,
      { id, accountId: runner.accountId },
      { minStep: Math.min(...points.map((p) => p.step)), maxStep },
    );
    return c.json({ accepted, duplicates: body.points.length - accepted }, 200);
  },
);

// ---- checkpoints ------------------------------------------------------------------------------

runnerRouter.openapi(
  createRoute({
    method: 'post',
    path: '/jobs/{id}/checkpoints',
    tags,
    summary: 'Start a checkpoint upload (R2 multipart)',
    security: bearerSecurity,
    request: { params: JobParams, body: jsonBody(CheckpointInitSchema) },
    responses: {
      201: json(CheckpointInitResponseSchema, 'Where to PUT the parts'),
      ...errors,
      ...conflictError,
    },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const { id } = c.req.valid('param');
    const body = c.req.valid('json');
    const db = c.get('db');
    const job = await requireLease(db, runner.accountId, id, body.lease_id);
    const checkpointId = newId('ckpt');
    const key = `checkpoints/${job.accountId}/${job.id}/${checkpointId}`;
    const upload = await c.env.ARTIFACTS.createMultipartUpload(key);
    await db
      .insert(checkpoints)
      .values({
        id: checkpointId,
        jobId: job.id,
        accountId: job.accountId,
        attempt: job.attempt,
        step: body.step,
        kind: body.kind,
        final: body.final,
        status: 'uploading',
        r2Key: key,
        uploadId: upload.uploadId,
        metadata: JSON.stringify(body.metadata),
        createdAt: Date.now(),
      })
      .run();
    return c.json(
      {
        checkpoint_id: checkpointId,
        part_url: `/v1/runner/jobs/${job.id}/checkpoints/${checkpointId}/parts/{part_number}`,
        min_part_size: limits(c.env).minPartBytes,
      },
      201,
    );
  },
);

const CheckpointParams = z.object({
  id: z.string().min(1).max(100),
  checkpoint_id: z.string().min(1).max(100),
});

async function uploadingCheckpoint(db: Db, jobId: string, checkpointId: string) {
  const row = await db
    .select()
    .from(checkpoints)
    .where(and(eq(checkpoints.id, checkpointId), eq(checkpoints.jobId, jobId)))
    .get();
  if (!row) throw notFound(`checkpoint ${checkpointId}`);
  if (row.status !== 'uploading' || !row.uploadId)
    throw conflict('upload_finished', `checkpoint ${checkpointId} is complete`);
  return row as typeof row & { uploadId: string };
}

runnerRouter.openapi(
  createRoute({
    method: 'put',
    path: '/jobs/{id}/checkpoints/{checkpoint_id}/parts/{part_number}',
    tags,
    summary: 'Upload one checkpoint part (the lease id goes in the X-Lease-Id header)',
    security: bearerSecurity,
    request: {
      params: CheckpointParams.extend({ part_number: z.coerce.number().int().min(1).max(10_000) }),
      headers: z.object({ 'x-lease-id': z.string().min(1).max(100) }),
      body: binaryBody('The bytes of this part'),
    },
    responses: {
      200: json(PartUploadResponseSchema, 'Keep the etag for complete'),
      ...errors,
      ...conflictError,
    },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const { id, checkpoint_id, part_number } = c.req.valid('param');
    const db = c.get('db');
    await requireLease(db, runner.accountId, id, c.req.valid('header')['x-lease-id']);
    const row = await uploadingCheckpoint(db, id, checkpoint_id);
    return c.json(await uploadPart(c, row.r2Key, row.uploadId, part_number), 200);
  },
);

runnerRouter.openapi(
  createRoute({
    method: 'post',
    path: '/jobs/{id}/checkpoints/{checkpoint_id}/complete',
    tags,
    summary:
      'Complete a checkpoint upload; it becomes the resume point of later attempts (a step already stored answers with the stored checkpoint)',
    security: bearerSecurity,
    request: { params: CheckpointParams, body: jsonBody(CheckpointCompleteSchema) },
    responses: { 200: json(CheckpointSchema, 'The checkpoint'), ...errors, ...conflictError },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const { id, checkpoint_id } = c.req.valid('param');
    const body = c.req.valid('json');
    const db = c.get('db');
    const job = await requireLease(db, runner.accountId, id, body.lease_id);
    const row = await uploadingCheckpoint(db, id, checkpoint_id);
    try {
      await c.env.ARTIFACTS.resumeMultipartUpload(row.r2Key, row.uploadId).complete(
        body.parts.map((p) => ({ partNumber: p.part_number, etag: p.etag })),
      );
    } catch {
      throw invalid(
        'R2 refused to complete the upload: check every part number and etag, and that parts are ≥ 5 MiB except the last',
      );
    }
    const head = await c.env.ARTIFACTS.head(row.r2Key);
    if (!head || head.size !== body.size) {
      await c.env.ARTIFACTS.delete(row.r2Key);
      await db.delete(checkpoints).where(eq(checkpoints.id, row.id)).run();
      throw invalid(
        `the stored checkpoint is ${head?.size ?? 0} bytes, the runner said ${body.size}; upload it again`,
        [{ path: 'size', message: 'does not match the uploaded bytes' }],
      );
    }
    // one checkpoint per (job, step): a second upload of a stored step is discarded, the first kept
    const stored = await db
      .select()
      .from(checkpoints)
      .where(
        and(eq(checkpoints.jobId, id), eq(checkpoints.step, row.step), eq(checkpoints.status, 'complete')),
      )
      .get();
    if (stored) {
      await c.env.ARTIFACTS.delete(row.r2Key);
      await db.delete(checkpoints).where(eq(checkpoints.id, row.id)).run();
      return c.json(toCheckpoint(stored), 200);
    }
    const [updated] = await db
      .update(checkpoints)
      .set({ status: 'complete', uploadId: null, size: body.size, sha256: body.sha256 })
      .where(and(eq(checkpoints.id, row.id), eq(checkpoints.status, 'uploading')))
      .returning();
    if (!updated) throw conflict('upload_finished', `checkpoint ${row.id} is complete`);
    await recordJobEvent(db, c.env, jobRef(job), 'job.checkpoint', {
      checkpoint_id: updated.id,
      step: updated.step,
      final: updated.final,
      size: updated.size,
      sha256: updated.sha256,
    });
    await publishCheckpointCreated(c.env, jobRef(job), updated, new URL(c.req.url).origin);
    return c.json(toCheckpoint(updated), 200);
  },
);

runnerRouter.openapi(
  createRoute({
    method: 'get',
    path: '/jobs/{id}/checkpoints/{checkpoint_id}/content',
    tags,
    summary: 'Download a checkpoint to resume from',
    security: bearerSecurity,
    request: { params: CheckpointParams },
    responses: { 200: binaryResponse('The checkpoint'), ...errors, ...conflictError },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const { id, checkpoint_id } = c.req.valid('param');
    const db = c.get('db');
    const job = await getAccountJob(db, runner.accountId, id);
    return downloadCheckpoint(c.env.ARTIFACTS, db, job.id, checkpoint_id) as never;
  },
);

runnerRouter.openapi(
  createRoute({
    method: 'get',
    path: '/checkpoints/{checkpoint_id}',
    tags,
    operationId: 'runnerGetCheckpoint',
    summary: "A checkpoint of the runner's account by id (jobs that start from `model.id: checkpoint:<id>`)",
    security: bearerSecurity,
    request: { params: z.object({ checkpoint_id: z.string().min(1).max(100) }) },
    responses: { 200: json(CheckpointSchema, 'The checkpoint'), ...errors },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const { checkpoint_id } = c.req.valid('param');
    const db = c.get('db');
    const row = await db
      .select({ checkpoint: checkpoints })
      .from(checkpoints)
      .innerJoin(jobs, eq(jobs.id, checkpoints.jobId))
      .where(and(eq(checkpoints.id, checkpoint_id), eq(jobs.accountId, runner.accountId)))
      .get();
    if (!row) throw notFound(`checkpoint ${checkpoint_id}`);
    return c.json(toCheckpoint(row.checkpoint), 200);
  },
);

// ---- rollouts ---------------------------------------------------------------------------------

runnerRouter.openapi(
  createRoute({
    method: 'put',
    path: '/jobs/{id}/rollouts/{step}',
    tags,
    summary:
      "Store one step's rollouts: gzipped JSONL, one record per sequence (replaces that step's earlier upload)",
    security: bearerSecurity,
    request: {
      params: JobParams.extend({ step: z.coerce.number().int().min(0) }),
      headers: z.object({ 'x-lease-id': z.string().min(1).max(100) }),
      body: binaryBody('gzip-compressed JSONL'),
    },
    responses: {
      200: json(z.object({ step: z.number().int(), size: z.number().int() }), 'Stored'),
      ...errors,
      ...conflictError,
    },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const { id, step } = c.req.valid('param');
    const db = c.get('db');
    const job = await requireLease(db, runner.accountId, id, c.req.valid('header')['x-lease-id']);
    const length = Number(c.req.header('content-length') ?? Number.NaN);
    const max = limits(c.env).maxUploadBytes;
    if (!Number.isSafeInteger(length))
      throw new ApiError(411, 'length_required', 'send a Content-Length header');
    if (length > max)
      throw new ApiError(413, 'too_large', `one step's rollouts may be at most ${max} bytes compressed`);
    const key = `rollouts/${job.accountId}/${job.id}/${step}.jsonl.gz`;
    const body = c.req.raw.body;
    if (!body) throw invalid('the body is empty');
    const fixed = new FixedLengthStream(length);
    await Promise.all([
      body.pipeTo(fixed.writable),
      c.env.ARTIFACTS.put(key, fixed.readable, {
        httpMetadata: { contentType: 'application/x-ndjson', contentEncoding: 'gzip' },
      }),
    ]);
    await db
      .insert(rollouts)
      .values({ jobId: job.id, step, attempt: job.attempt, r2Key: key, size: length, createdAt: Date.now() })
      .onConflictDoUpdate({
        target: [rollouts.jobId, rollouts.step],
        set: { attempt: job.attempt, r2Key: key, size: length, createdAt: Date.now() },
      })
      .run();
    return c.json({ step, size: length }, 200);
  },
);

// ---- ending a job -----------------------------------------------------------------------------

const stateOf = (row: JobRow) => ({ job_id: row.id, status: row.status, attempt: row.attempt });

runnerRouter.openapi(
  createRoute({
    method: 'post',
    path: '/jobs/{id}/complete',
    tags,
    summary: 'The job succeeded',
    security: bearerSecurity,
    request: { params: JobParams, body: jsonBody(CompleteJobSchema) },
    responses: { 200: json(LeaseStateSchema, 'The job is succeeded'), ...errors, ...conflictError },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const { id } = c.req.valid('param');
    const body = c.req.valid('json');
    const db = c.get('db');
    await getAccountJob(db, runner.accountId, id);
    if (body.final_checkpoint_id) {
      const ckpt = await db
        .select()
        .from(checkpoints)
        .where(
          and(
            eq(checkpoints.id, body.final_checkpoint_id),
            eq(checkpoints.jobId, id),
            eq(checkpoints.status, 'complete'),
          ),
        )
        .get();
      if (!ckpt) {
        throw invalid(`checkpoint ${body.final_checkpoint_id} is not a complete checkpoint of this job`, [
          { path: 'final_checkpoint_id', message: 'not a complete checkpoint of this job' },
        ]);
      }
      await db.update(checkpoints).set({ final: true }).where(eq(checkpoints.id, ckpt.id)).run();
    }
    const row = await completeJob(db, c.env, id, body.lease_id, {
      summary: body.summary,
      final_checkpoint_id: body.final_checkpoint_id ?? null,
    });
    return c.json(stateOf(row), 200);
  },
);

runnerRouter.openapi(
  createRoute({
    method: 'post',
    path: '/jobs/{id}/fail',
    tags,
    summary: 'The job failed; retryable failures are requeued while retries remain',
    security: bearerSecurity,
    request: { params: JobParams, body: jsonBody(FailJobSchema) },
    responses: { 200: json(LeaseStateSchema, 'queued (requeued) or failed'), ...errors, ...conflictError },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const { id } = c.req.valid('param');
    const body = c.req.valid('json');
    const db = c.get('db');
    await getAccountJob(db, runner.accountId, id);
    return c.json(stateOf(await failJob(db, c.env, id, body.lease_id, body.error, body.retryable)), 200);
  },
);

runnerRouter.openapi(
  createRoute({
    method: 'post',
    path: '/jobs/{id}/ack',
    tags,
    summary: 'Acknowledge a cancel (→ cancelled) or pause (→ paused) request after stopping',
    security: bearerSecurity,
    request: { params: JobParams, body: jsonBody(AckJobSchema) },
    responses: { 200: json(LeaseStateSchema, 'The job after the ack'), ...errors, ...conflictError },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const { id } = c.req.valid('param');
    const body = c.req.valid('json');
    const db = c.get('db');
    await getAccountJob(db, runner.accountId, id);
    return c.json(stateOf(await ackJob(db, c.env, id, body.lease_id, body.action)), 200);
  },
);

// ---- downloads --------------------------------------------------------------------------------

runnerRouter.openapi(
  createRoute({
    method: 'get',
    path: '/artifacts/{id}/content',
    tags,
    summary: "Download one of the account's artifacts (datasets, models)",
    security: bearerSecurity,
    request: { params: JobParams },
    responses: { 200: binaryResponse('The file'), ...errors },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const row = await getAccountArtifact(c.get('db'), runner.accountId, c.req.valid('param').id);
    return artifactContent(c, row) as never;
  },
);

runnerRouter.openapi(
  createRoute({
    method: 'get',
    path: '/bundles/{sha256}',
    tags,
    summary: 'Download a plugin bundle by its sha256',
    security: bearerSecurity,
    request: { params: z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/) }) },
    responses: { 200: binaryResponse('The bundle'), ...errors },
  }),
  async (c) => {
    runnerOf(c);
    return bundleResponse(c.env.ARTIFACTS, c.req.valid('param').sha256) as never;
  },
);

runnerRouter.openapi(
  createRoute({
    method: 'get',
    path: '/jobs/{id}',
    tags,
    summary: 'The state of a job this runner works on',
    security: bearerSecurity,
    request: { params: JobParams },
    responses: { 200: json(LeaseStateSchema, 'State'), ...errors },
  }),
  async (c) => {
    const runner = runnerOf(c);
    const row = await getAccountJob(c.get('db'), runner.accountId, c.req.valid('param').id);
    return c.json(stateOf(row), 200);
  },
);
