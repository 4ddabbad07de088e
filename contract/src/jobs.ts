import { z } from 'zod';
import { JobSpecSchema } from './job-spec';
import { int, num, str } from './zod-helpers';

// Jobs as the API returns them, their lifecycle, events, metric points, checkpoints and rollouts.

/** queued → running → succeeded | failed | cancelled, plus cancelling and paused (ARCHITECTURE.md). */
export const JOB_STATUSES = [
  'queued',
  'running',
  'paused',
  'cancelling',
  'succeeded',
  'failed',
  'cancelled',
] as const;
export const JobStatusSchema = z.enum(JOB_STATUSES).meta({ id: 'JobStatus' });
export type JobStatus = z.infer<typeof JobStatusSchema>;
export const TERMINAL_JOB_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];

export const JobErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
});
export type JobError = z.infer<typeof JobErrorSchema>;

/** A submission-time warning: `code`, the spec `field` it is about, and what to do. */
export const JobWarningSchema = z
  .object({
    code: z.enum(['no_runner_for_model']),
    field: z.string(),
    message: z.string(),
  })
  .meta({ id: 'JobWarning' });
export type JobWarning = z.infer<typeof JobWarningSchema>;

export const JobSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    status: JobStatusSchema,
    algorithm: z.string(),
    /** Number of times the job has been leased to a runner (the current/last attempt). */
    attempt: z.number().int(),
    /** Lease expiries and retryable failures so far; past the bound the job fails. */
    retries: z.number().int(),
    cancel_requested: z.boolean(),
    pause_requested: z.boolean(),
    runner_id: z.string().nullable(),
    lease_expires_at: z.string().nullable(),
    /** Latest step any metric was reported for. */
    current_step: z.number().int().nullable(),
    total_steps: z.number().int(),
    error: JobErrorSchema.nullable(),
    created_at: z.string(),
    updated_at: z.string(),
    started_at: z.string().nullable(),
    finished_at: z.string().nullable(),
    spec: JobSpecSchema,
    /**
     * Only in the answer to POST /v1/jobs: things that do not stop the job from being queued but
     * will likely keep it waiting (each also recorded as a `job.warning` event).
     */
    warnings: z.array(JobWarningSchema).optional(),
  })
  .meta({ id: 'Job' });
export type Job = z.infer<typeof JobSchema>;

export const JobListSchema = z
  .object({
    data: z.array(JobSchema.omit({ spec: true })),
    /** Pass as `cursor` to get the next page; null on the last page. */
    next_cursor: z.string().nullable(),
  })
  .meta({ id: 'JobList' });
export type JobList = z.infer<typeof JobListSchema>;

// ---- events -----------------------------------------------------------------------------------

export const JOB_EVENT_TYPES = [
  'job.queued',
  'job.started',
  'job.progress',
  'job.log',
  'job.checkpoint',
  'job.evaluated',
  'job.cancel_requested',
  'job.pause_requested',
  'job.paused',
  'job.resumed',
  'job.lease_expired',
  'job.requeued',
  'job.succeeded',
  'job.failed',
  'job.cancelled',
  'job.budget_reached',
  'job.alarm',
  'job.warning',
] as const;
export const JobEventTypeSchema = z.enum(JOB_EVENT_TYPES).meta({ id: 'JobEventType' });
export type JobEventType = z.infer<typeof JobEventTypeSchema>;

/** Event types a runner may report itself; lifecycle events are written by the API. */
export const RUNNER_EVENT_TYPES = ['job.progress', 'job.log', 'job.evaluated'] as const;
export const RunnerEventTypeSchema = z.enum(RUNNER_EVENT_TYPES, {
  error: `must be one of ${RUNNER_EVENT_TYPES.join(', ')} (lifecycle events are written by the API)`,
});

export const JobEventSchema = z
  .object({
    /** Monotonic per job: use as the `cursor` of GET /v1/jobs/:id/events. */
    id: z.number().int(),
    job_id: z.string(),
    type: JobEventTypeSchema,
    data: z.record(z.string(), z.unknown()),
    attempt: z.number().int(),
    created_at: z.string(),
  })
  .meta({ id: 'JobEvent' });
export type JobEvent = z.infer<typeof JobEventSchema>;

export const JobEventListSchema = z
  .object({ data: z.array(JobEventSchema), next_cursor: z.string().nullable() })
  .meta({ id: 'JobEventList' });

// ---- metrics ----------------------------------------------------------------------------------

/** A metric name: `reward/mean`, `loss`, `eval/pass@1`, `refinement/success_rate` (the usual GRPO dashboard names). */
export const MetricNameSchema = str(1, 200).regex(
  /^[A-Za-z0-9_./:@-]+$/,
  'metric names use letters, digits and _ . / : @ -',
);

/** One training step's values. A value that could not be computed is null (never NaN). */
export const MetricPointSchema = z
  .strictObject({
    step: int(0),
    values: z
      .record(MetricNameSchema, num().nullable())
      .refine((v) => Object.keys(v).length <= 500, 'at most 500 values per point'),
    /** ISO time the step finished on the runner. */
    time: z.iso.datetime().optional(),
  })
  .meta({ id: 'MetricPoint' });
export type MetricPoint = z.infer<typeof MetricPointSchema>;

export const StoredMetricPointSchema = z
  .object({
    step: z.number().int(),
    attempt: z.number().int(),
    values: z.record(z.string(), z.number().nullable()),
    time: z.string(),
  })
  .meta({ id: 'StoredMetricPoint' });
export type StoredMetricPoint = z.infer<typeof StoredMetricPointSchema>;

export const MetricSeriesSchema = z
  .object({
    data: z.array(StoredMetricPointSchema),
    /** Pass as `from_step` to continue; null when there is nothing more. */
    next_from_step: z.number().int().nullable(),
  })
  .meta({ id: 'MetricSeries' });

// ---- checkpoints and rollouts -----------------------------------------------------------------

export const CheckpointSchema = z
  .object({
    id: z.string(),
    job_id: z.string(),
    attempt: z.number().int(),
    step: z.number().int(),
    /** `adapter` (LoRA weights) or `full`; `final` marks the checkpoint the job ended with. */
    kind: z.string(),
    final: z.boolean(),
    status: z.enum(['uploading', 'complete']),
    size: z.number().int().nullable(),
    sha256: z.string().nullable(),
    metadata: z.record(z.string(), z.unknown()),
    created_at: z.string(),
  })
  .meta({ id: 'Checkpoint' });
export type Checkpoint = z.infer<typeof CheckpointSchema>;

export const RolloutStepSchema = z
  .object({
    step: z.number().int(),
    attempt: z.number().int(),
    size: z.number().int(),
    created_at: z.string(),
  })
  .meta({ id: 'RolloutStep' });

/**
 * One sequence of a step's rollouts, as stored (one gzipped JSONL object per step in R2). The
 * runner writes whatever extra fields help debugging; these are the ones the query filters on.
 */
export const RolloutRecordSchema = z
  .looseObject({
    step: z.number().int(),
    prompt_index: z.number().int().optional(),
    kind: z.enum(['initial', 'refinement', 'evaluation']).optional(),
    reward: z.number().nullable().optional(),
  })
  .meta({ id: 'RolloutRecord' });
export type RolloutRecord = z.infer<typeof RolloutRecordSchema>;
