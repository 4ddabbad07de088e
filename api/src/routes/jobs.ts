import {
  CheckpointSchema,
  JOB_STATUSES,
  JobEventListSchema,
  JobListSchema,
  JobSchema,
  JobSpecInputSchema,
  type JobStatus,
  MetricSeriesSchema,
  RolloutStepSchema,
  resolveJobSpec,
  TERMINAL_JOB_STATUSES,
} from '@cgrpo/contract';
import { createRoute } from '@hono/zod-openapi';
import { and, asc, desc, eq, gt, gte, inArray, lt, or, sql } from 'drizzle-orm';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { userOf } from '../auth';
import { admitJobForKey, assertKeyHasRoom, countJobToKey } from '../budgets';
import {
  artifacts,
  type CheckpointRow,
  checkpoints,
  type JobRow,
  jobEvents,
  jobs,
  metricPoints,
  rollouts,
} from '../db/schema';
import type { Db } from '../env';
import { ApiError, conflict, invalid, notFound } from '../errors';
import { recordJobEvent } from '../events';
import { iso, newId } from '../ids';
import {
  getAccountJob,
  jobRef,
  requestCancel,
  requestPause,
  requestResume,
  toJob,
  toJobSummary,
} from '../lifecycle';
import {
  bearerSecurity,
  binaryResponse,
  conflictError,
  errors,
  json,
  jsonBody,
  router,
  spendLimitError,
} from '../openapi';
import { decodeCursor, page } from '../pagination';
import { checkSpecReferences, modelWarnings, requiredCapabilities } from '../spec-checks';
import { jobWebhookUrlProblem } from '../webhooks/job-events';

// Jobs as users see them: submit, list, read, control (cancel/pause/resume), and follow (events,
// live stream, metrics, checkpoints, rollouts).

export const jobsRouter = router();
const tags = ['jobs'];
const IdParams = z.object({ id: z.string().min(1).max(100) });

jobsRouter.openapi(
  createRoute({
    method: 'post',
    path: '/jobs',
    tags,
    summary: 'Submit a job',
    description:
      'Validates the spec (unknown fields are rejected with their path), fills every default, stores the resolved spec immutably and queues the job. Send an `Idempotency-Key` header to make retries safe: the same key returns the job it created.',
    security: bearerSecurity,
    request: {
      headers: z.object({ 'idempotency-key': z.string().min(1).max(200).optional() }),
      body: jsonBody(JobSpecInputSchema),
    },
    responses: {
      201: json(JobSchema, 'The queued job'),
      200: json(JobSchema, 'The job an earlier request with the same Idempotency-Key created'),
      ...errors,
      ...conflictError,
      ...spendLimitError,
    },
  }),
  async (c) => {
    const { accountId, keyId } = userOf(c);
    const db = c.get('db');
    const submitted = await withArtifactFields(db, accountId, c.req.valid('json'), await c.req.json());
    const resolved = resolveJobSpec(submitted);
    if (!resolved.ok) throw invalid('the job spec is invalid', resolved.fields);
    const spec = resolved.spec;
    const idempotencyKey = c.req.valid('header')['idempotency-key'] ?? null;
    const specJson = JSON.stringify(spec);
    if (idempotencyKey) {
      const existing = await db
        .select()
        .from(jobs)
        .where(and(eq(jobs.accountId, accountId), eq(jobs.idempotencyKey, idempotencyKey)))
        .get();
      if (existing) return replay(existing, specJson);
    }
    await admitJobForKey(c.env, keyId, spec);
    const problems = await checkSpecReferences(db, accountId, spec);
    if (spec.webhook) {
      // A URL the webhook engine would refuse (SSRF rules) must fail the submission, not go silent.
      const problem = await jobWebhookUrlProblem(c.env, spec.webhook.url);
      if (problem) problems.push(problem);
    }
    if (problems.length > 0)
      throw invalid('the job spec refers to things that do not exist or do not fit', problems);
    const now = Date.now();
    const row: JobRow = {
      id: newId('job'),
      accountId,
      name: spec.name,
      status: 'queued',
      algorithm: spec.algorithm,
      spec: specJson,
      runnerLabels: JSON.stringify(spec.runner_labels),
      requiredCapabilities: JSON.stringify(requiredCapabilities(spec)),
      attempt: 0,
      retries: 0,
      cancelRequested: false,
      pauseRequested: false,
      runnerId: null,
      leaseId: null,
      leaseExpiresAt: null,
      currentStep: null,
      totalSteps: spec.hyperparameters.total_steps,
      errorCode: null,
      errorMessage: null,
      idempotencyKey,
      createdAt: now,
      updatedAt: now,
      startedAt: null,
      finishedAt: null,
    };
    // The job row and its job.queued event in one D1 batch (one round trip).
    const insertJob = c.env.DB.prepare(
      `INSERT INTO jobs (id, account_id, name, status, algorithm, spec, runner_labels, required_capabilities,
         total_steps, idempotency_key, created_at, updated_at)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11) ON CONFLICT DO NOTHING`,
    ).bind(
      row.id,
      row.accountId,
      row.name,
      row.status,
      row.algorithm,
      row.spec,
      row.runnerLabels,
      row.requiredCapabilities,
      row.totalSteps,
      row.idempotencyKey,
      now,
    );
    const { recorded } = await recordJobEvent(
      db,
      c.env,
      jobRef(row),
      'job.queued',
      { spec_name: spec.name },
      [insertJob, countJobToKey(c.env, row.id, keyId, now)],
    );
    if (!recorded) {
      // Another request with the same Idempotency-Key won the race.
      const winner = await db
        .select()
        .from(jobs)
        .where(and(eq(jobs.accountId, accountId), eq(jobs.idempotencyKey, idempotencyKey ?? '')))
        .get();
      if (!winner) throw new ApiError(500, 'internal', 'the job could not be stored; retry');
      return replay(winner, specJson);
    }
    const warnings = await modelWarnings(db, accountId, spec, now);
    for (const warning of warnings) await recordJobEvent(db, c.env, jobRef(row), 'job.warning', warning);
    return c.json({ ...toJob(row), ...(warnings.length > 0 ? { warnings } : {}) }, 201);

    function replay(existing: typeof jobs.$inferSelect, sentSpec: string) {
      if (existing.spec !== sentSpec) {
        throw conflict(
          'idempotency_key_reused',
          `Idempotency-Key '${idempotencyKey}' was already used for job ${existing.id} with a different spec; use a new key`,
        );
      }
      return c.json(toJob(existing), 200);
    }
  },
);

const ListQuery = z.strictObject({
  /** One status or a comma-separated list. */
  status: z
    .string()
    .optional()
    .refine(
      (s) => !s || s.split(',').every((v) => (JOB_STATUSES as readonly string[]).includes(v)),
      `must be one or more of ${JOB_STATUSES.join(', ')}, comma-separated`,
    ),
  cursor: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});

jobsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/jobs',
    tags,
    summary: 'List jobs, newest first (cursor pagination, status filter)',
    security: bearerSecurity,
    request: { query: ListQuery },
    responses: { 200: json(JobListSchema, 'A page of jobs (without their specs)'), ...errors },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const { status, cursor, limit } = c.req.valid('query');
    const after = decodeCursor(cursor);
    const rows = await c
      .get('db')
      .select()
      .from(jobs)
      .where(
        and(
          eq(jobs.accountId, accountId),
          status ? inArray(jobs.status, status.split(',')) : undefined,
          after
            ? or(
                lt(jobs.createdAt, after.createdAt),
                and(eq(jobs.createdAt, after.createdAt), lt(jobs.id, after.id)),
              )
            : undefined,
        ),
      )
      .orderBy(desc(jobs.createdAt), desc(jobs.id))
      .limit(limit + 1)
      .all();
    const { rows: shown, next } = page(rows, limit);
    return c.json({ data: shown.map(toJobSummary), next_cursor: next }, 200);
  },
);

jobsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/jobs/{id}',
    tags,
    summary: 'A job with its resolved spec',
    security: bearerSecurity,
    request: { params: IdParams },
    responses: { 200: json(JobSchema, 'The job'), ...errors },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    return c.json(toJob(await getAccountJob(c.get('db'), accountId, c.req.valid('param').id)), 200);
  },
);

/**
 * A dataset uploaded with a field mapping (`POST /v1/artifacts?kind=dataset&prompt_field=…`) keeps
 * it: an `artifact://` dataset whose spec names no `fields` gets the mapping stored with the
 * artifact. A spec that names `fields` wins; an unknown artifact is left to the reference checks.
 */
async function withArtifactFields(
  db: Db,
  accountId: string,
  input: SubmittedSpec,
  raw: unknown,
): Promise<SubmittedSpec> {
  const datasets = { ...input.datasets };
  for (const name of ['train', 'validation'] as const) {
    const ref = datasets[name];
    if (!ref?.uri.startsWith('artifact://') || namesFields(raw, name)) continue;
    const row = await db
      .select({ fields: artifacts.fields })
      .from(artifacts)
      .where(and(eq(artifacts.id, ref.uri.slice('artifact://'.length)), eq(artifacts.accountId, accountId)))
      .get();
    if (row?.fields) datasets[name] = { ...ref, fields: { ...ref.fields, ...row.fields } };
  }
  return { ...input, datasets };
}

type SubmittedSpec = z.output<typeof JobSpecInputSchema>;

/** Whether the body as sent names `datasets.<name>.fields` (parsing fills the default in). */
function namesFields(raw: unknown, name: string): boolean {
  const datasets = (raw as { datasets?: Record<string, unknown> } | null)?.datasets;
  const ref = datasets?.[name];
  return typeof ref === 'object' && ref !== null && 'fields' in ref;
}

const controls = [
  {
    action: 'cancel',
    run: requestCancel,
    summary: 'Cancel a job (queued/paused: at once; running: `cancelling` until the runner stops)',
  },
  {
    action: 'pause',
    run: requestPause,
    summary: 'Pause a job (running: the runner checkpoints, then stops)',
  },
  { action: 'resume', run: requestResume, summary: 'Resume a paused job (it is queued again)' },
] as const;

for (const control of controls) {
  jobsRouter.openapi(
    createRoute({
      method: 'post',
      path: `/jobs/{id}/${control.action}`,
      tags,
      summary: control.summary,
      security: bearerSecurity,
      request: { params: IdParams },
      responses: {
        200: json(JobSchema, 'The job after the request'),
        ...errors,
        ...conflictError,
        ...(control.action === 'resume' ? spendLimitError : {}),
      },
    }),
    async (c) => {
      const { accountId } = userOf(c);
      const db = c.get('db');
      const job = await getAccountJob(db, accountId, c.req.valid('param').id);
      if (control.action === 'resume') await assertKeyHasRoom(c.env, job.id);
      return c.json(toJob(await control.run(db, c.env, job)), 200);
    },
  );
}

// ---- events -----------------------------------------------------------------------------------

const EventsQuery = z.strictObject({
  /** The id of the last event already seen (exclusive). */
  cursor: z.string().regex(/^\d+$/, 'must be the id of an event').optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

type EventRow = typeof jobEvents.$inferSelect;
function toEvent(row: EventRow) {
  return {
    id: row.id,
    job_id: row.jobId,
    type: row.type as z.infer<typeof JobEventListSchema>['data'][number]['type'],
    data: JSON.parse(row.data) as Record<string, unknown>,
    attempt: row.attempt,
    created_at: iso(row.createdAt)!,
  };
}

async function eventsAfter(db: Db, jobId: string, afterId: number, limit: number): Promise<EventRow[]> {
  return db
    .select()
    .from(jobEvents)
    .where(and(eq(jobEvents.jobId, jobId), gt(jobEvents.id, afterId)))
    .orderBy(asc(jobEvents.id))
    .limit(limit)
    .all();
}

jobsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/jobs/{id}/events',
    tags,
    summary: "A job's events, oldest first, after `cursor`",
    description:
      'next_cursor is the id of the last event returned (or the cursor sent, when there are none yet): poll with it to follow the job.',
    security: bearerSecurity,
    request: { params: IdParams, query: EventsQuery },
    responses: { 200: json(JobEventListSchema, 'Events'), ...errors },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const db = c.get('db');
    const job = await getAccountJob(db, accountId, c.req.valid('param').id);
    const { cursor, limit } = c.req.valid('query');
    const rows = await eventsAfter(db, job.id, Number(cursor ?? 0), limit);
    const last = rows.at(-1)?.id ?? (cursor ? Number(cursor) : 0);
    return c.json({ data: rows.map(toEvent), next_cursor: String(last) }, 200);
  },
);

const StreamQuery = z.strictObject({
  cursor: z.string().regex(/^\d+$/, 'must be the id of an event').optional(),
  /** How often to look for new events (ms). */
  poll_ms: z.coerce.number().int().min(100).max(10_000).default(1000),
});

/** Longest a stream stays open; clients reconnect with Last-Event-ID. */
const STREAM_MAX_MS = 5 * 60_000;

jobsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/jobs/{id}/stream',
    tags,
    summary: "Live stream of a job's events (Server-Sent Events)",
    description:
      'Each SSE message has `id` = event id, `event` = event type, `data` = the event JSON. Resume with the `Last-Event-ID` header or `cursor`. The stream ends after the job finishes (and at most after 5 minutes; reconnect).',
    security: bearerSecurity,
    request: { params: IdParams, query: StreamQuery },
    responses: {
      200: { description: 'text/event-stream', content: { 'text/event-stream': { schema: z.string() } } },
      ...errors,
    },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const db = c.get('db');
    const job = await getAccountJob(db, accountId, c.req.valid('param').id);
    const { cursor, poll_ms } = c.req.valid('query');
    const lastEventId = c.req.header('last-event-id');
    let after = Number(lastEventId && /^\d+$/.test(lastEventId) ? lastEventId : (cursor ?? 0));
    return streamSSE(c, async (stream) => {
      const started = Date.now();
      while (!stream.aborted && Date.now() - started < STREAM_MAX_MS) {
        const rows = await eventsAfter(db, job.id, after, 500);
        for (const row of rows) {
          await stream.writeSSE({ id: String(row.id), event: row.type, data: JSON.stringify(toEvent(row)) });
          after = row.id;
        }
        if (rows.length === 500) continue;
        const current = await db.select({ status: jobs.status }).from(jobs).where(eq(jobs.id, job.id)).get();
        if (current && TERMINAL_JOB_STATUSES.includes(current.status as JobStatus)) {
          // Events written by the same transition may land just after the status: read once more.
          const tail = await eventsAfter(db, job.id, after, 500);
          for (const row of tail) {
            await stream.writeSSE({
              id: String(row.id),
              event: row.type,
              data: JSON.stringify(toEvent(row)),
            });
            after = row.id;
          }
          break;
        }
        await stream.sleep(poll_ms);
      }
    }) as never;
  },
);

// ---- metrics ----------------------------------------------------------------------------------

const MetricsQuery = z.strictObject({
  /** Comma-separated metric names; omitted = all. */
  names: z.string().max(4000).optional(),
  from_step: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
});

jobsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/jobs/{id}/metrics',
    tags,
    summary:
      "A job's metric points from `from_step` on (one point per step, from the latest attempt that reported it)",
    security: bearerSecurity,
    request: { params: IdParams, query: MetricsQuery },
    responses: { 200: json(MetricSeriesSchema, 'Metric points, by step'), ...errors },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const db = c.get('db');
    const job = await getAccountJob(db, accountId, c.req.valid('param').id);
    const { names, from_step, limit } = c.req.valid('query');
    const wanted = names ? new Set(names.split(',').filter(Boolean)) : undefined;
    const rows = await db
      .select()
      .from(metricPoints)
      .where(
        and(
          eq(metricPoints.jobId, job.id),
          gte(metricPoints.step, from_step),
          sql`${metricPoints.attempt} = (SELECT MAX(m2.attempt) FROM metric_points m2 WHERE m2.job_id = ${metricPoints.jobId} AND m2.step = ${metricPoints.step})`,
        ),
      )
      .orderBy(asc(metricPoints.step))
      .limit(limit + 1)
      .all();
    const shown = rows.slice(0, limit);
    const data = shown.map((row) => {
      const values = JSON.parse(row.values) as Record<string, number | null>;
      const picked = wanted
        ? Object.fromEntries(Object.entries(values).filter(([k]) => wanted.has(k)))
        : values;
      return { step: row.step, attempt: row.attempt, values: picked, time: iso(row.createdAt)! };
    });
    const next = rows.length > limit ? shown[shown.length - 1]!.step + 1 : null;
    return c.json({ data, next_from_step: next }, 200);
  },
);

// ---- checkpoints ------------------------------------------------------------------------------

export function toCheckpoint(row: CheckpointRow) {
  return {
    id: row.id,
    job_id: row.jobId,
    attempt: row.attempt,
    step: row.step,
    kind: row.kind,
    final: row.final,
    status: row.status,
    size: row.size,
    sha256: row.sha256,
    metadata: JSON.parse(row.metadata) as Record<string, unknown>,
    created_at: iso(row.createdAt)!,
  };
}

jobsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/jobs/{id}/checkpoints',
    tags,
    summary: "A job's checkpoints, by step",
    security: bearerSecurity,
    request: { params: IdParams },
    responses: { 200: json(z.object({ data: z.array(CheckpointSchema) }), 'Checkpoints'), ...errors },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const db = c.get('db');
    const job = await getAccountJob(db, accountId, c.req.valid('param').id);
    const rows = await db
      .select()
      .from(checkpoints)
      .where(eq(checkpoints.jobId, job.id))
      .orderBy(asc(checkpoints.step), asc(checkpoints.createdAt))
      .all();
    return c.json({ data: rows.map(toCheckpoint) }, 200);
  },
);

jobsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/jobs/{id}/checkpoints/{checkpoint_id}/content',
    tags,
    summary: "Download a checkpoint's bytes",
    security: bearerSecurity,
    request: {
      params: z.object({ id: z.string().min(1).max(100), checkpoint_id: z.string().min(1).max(100) }),
    },
    responses: { 200: binaryResponse('The checkpoint file'), ...errors, ...conflictError },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const db = c.get('db');
    const { id, checkpoint_id } = c.req.valid('param');
    const job = await getAccountJob(db, accountId, id);
    return downloadCheckpoint(c.env.ARTIFACTS, db, job.id, checkpoint_id) as never;
  },
);

export async function downloadCheckpoint(bucket: R2Bucket, db: Db, jobId: string, checkpointId: string) {
  const row = await db
    .select()
    .from(checkpoints)
    .where(and(eq(checkpoints.id, checkpointId), eq(checkpoints.jobId, jobId)))
    .get();
  if (!row) throw notFound(`checkpoint ${checkpointId}`);
  if (row.status !== 'complete')
    throw conflict('checkpoint_uploading', `checkpoint ${checkpointId} is still uploading`);
  const object = await bucket.get(row.r2Key);
  if (!object) throw notFound(`content of checkpoint ${checkpointId}`);
  return new Response(object.body, {
    headers: {
      'content-type': 'application/octet-stream',
      'content-length': String(object.size),
      ...(row.sha256 ? { 'x-sha256': row.sha256 } : {}),
    },
  });
}

// ---- rollouts ---------------------------------------------------------------------------------

const RolloutsQuery = z.strictObject({
  /** Without a step: the list of steps that have rollouts. */
  step: z.coerce.number().int().min(0).optional(),
  min_reward: z.coerce.number().optional(),
  max_reward: z.coerce.number().optional(),
  kind: z.enum(['initial', 'refinement', 'evaluation']).optional(),
  limit: z.coerce.number().int().min(1).max(5000).default(100),
});

jobsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/jobs/{id}/rollouts',
    tags,
    summary: "A job's rollouts: the steps that have them, or one step's records filtered by reward and kind",
    security: bearerSecurity,
    request: { params: IdParams, query: RolloutsQuery },
    responses: {
      200: json(
        z.union([
          z.object({ steps: z.array(RolloutStepSchema) }),
          z.object({ step: z.number().int(), data: z.array(z.record(z.string(), z.unknown())) }),
        ]),
        'Steps, or the records of one step',
      ),
      ...errors,
    },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const db = c.get('db');
    const job = await getAccountJob(db, accountId, c.req.valid('param').id);
    const query = c.req.valid('query');
    if (query.step === undefined) {
      const rows = await db
        .select()
        .from(rollouts)
        .where(eq(rollouts.jobId, job.id))
        .orderBy(asc(rollouts.step))
        .all();
      return c.json(
        {
          steps: rows.map((r) => ({
            step: r.step,
            attempt: r.attempt,
            size: r.size,
            created_at: iso(r.createdAt)!,
          })),
        },
        200,
      );
    }
    const row = await db
      .select()
      .from(rollouts)
      .where(and(eq(rollouts.jobId, job.id), eq(rollouts.step, query.step)))
      .get();
    if (!row) throw notFound(`rollouts of step ${query.step}`);
    const object = await c.env.ARTIFACTS.get(row.r2Key);
    if (!object) throw notFound(`rollouts of step ${query.step}`);
    const data: Record<string, unknown>[] = [];
    const lines = object.body
      .pipeThrough(new DecompressionStream('gzip'))
      .pipeThrough(new TextDecoderStream());
    let pending = '';
    const take = (line: string) => {
      if (line.trim() === '' || data.length >= query.limit) return;
      const record = JSON.parse(line) as Record<string, unknown>;
      const reward = typeof record.reward === 'number' ? record.reward : null;
      if (query.min_reward !== undefined && (reward === null || reward < query.min_reward)) return;
      if (query.max_reward !== undefined && (reward === null || reward > query.max_reward)) return;
      if (query.kind && record.kind !== query.kind) return;
      data.push(record);
    };
    for await (const chunk of lines) {
      pending += chunk;
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      parts.forEach(take);
      if (data.length >= query.limit) break;
    }
    take(pending);
    return c.json({ step: query.step, data }, 200);
  },
);
