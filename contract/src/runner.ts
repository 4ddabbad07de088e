import { z } from 'zod';
import { JobSpecSchema } from './job-spec';
import { CheckpointSchema, MetricPointSchema, RunnerEventTypeSchema } from './jobs';
import { PluginManifestSchema } from './plugins';
import { UploadedPartSchema } from './resources';
import { bool, int, num, str } from './zod-helpers';

// The runner protocol: every message a runner sends to /v1/runner/* and every answer it gets.
// A runner holds a lease on one job; every job-scoped call carries the lease id and the attempt,
// and a call with a lease the job no longer has is answered 409 `lease_lost` (stop working).

const LabelSchema = str(1, 64).regex(/^[A-Za-z0-9_.:=-]+$/, 'labels use letters, digits and _ . : = -');

/** POST /v1/runner/register, authorised by a registration key (`cgrpo_rk_…`). */
export const RunnerRegisterRequestSchema = z
  .strictObject({
    name: str(1, 200),
    labels: z.array(LabelSchema).max(64).default([]),
    /** What the host can do: `cpu`, `cuda`, `webgpu`, `llm.chat`, ... */
    capabilities: z.array(LabelSchema).max(64).default([]),
    version: str(0, 100).default(''),
  })
  .meta({ id: 'RunnerRegisterRequest' });
export type RunnerRegisterRequest = z.input<typeof RunnerRegisterRequestSchema>;

export const RunnerRegisterResponseSchema = z
  .object({
    runner_id: z.string(),
    /** `cgrpo_rt_…`, valid only on /v1/runner/* routes; shown once. */
    token: z.string(),
  })
  .meta({ id: 'RunnerRegisterResponse' });
export type RunnerRegisterResponse = z.infer<typeof RunnerRegisterResponseSchema>;

/** POST /v1/runner/lease: long-poll for a job this runner can run. */
export const LeaseRequestSchema = z
  .strictObject({
    /** Seconds to wait for a job before answering 204 (0 = answer at once). */
    wait_seconds: num(0, 60).default(20),
    /** Overrides the labels given at registration, for this request. */
    labels: z.array(LabelSchema).max(64).optional(),
    capabilities: z.array(LabelSchema).max(64).optional(),
  })
  .meta({ id: 'LeaseRequest' });
export type LeaseRequest = z.input<typeof LeaseRequestSchema>;

/** A plugin the job uses, resolved to what the runner loads. */
export const ResolvedPluginSchema = z.object({
  role: z.enum(['verifier', 'critic', 'shaping']),
  ref: z.string(),
  builtin: z.boolean(),
  config: z.record(z.string(), z.unknown()),
  grants: z.array(z.string()),
  /** For uploaded plugins: the bundle's sha256, manifest and where to download it. */
  sha256: z.string().nullable(),
  manifest: PluginManifestSchema.nullable(),
  bundle_url: z.string().nullable(),
});
export type ResolvedPlugin = z.infer<typeof ResolvedPluginSchema>;

export const LeaseSchema = z
  .object({
    lease_id: z.string(),
    job_id: z.string(),
    /** 1 on the first lease, +1 on every later one (resume from `resume_from`). */
    attempt: z.number().int(),
    lease_expires_at: z.string(),
    /** Send a heartbeat at least this often; the lease lasts lease_seconds from each. */
    heartbeat_interval_seconds: z.number(),
    lease_seconds: z.number(),
    spec: JobSpecSchema,
    plugins: z.array(ResolvedPluginSchema),
    /** The latest complete checkpoint of an earlier attempt, or null to start from the base model. */
    resume_from: CheckpointSchema.nullable(),
    /** The last step whose metrics are stored (null = none): resume after it. */
    last_step: z.number().int().nullable(),
  })
  .meta({ id: 'Lease' });
export type Lease = z.infer<typeof LeaseSchema>;

/** Every job-scoped runner call names its lease. */
const leased = { lease_id: str(1, 100) };

export const HeartbeatRequestSchema = z
  .strictObject({
    ...leased,
    /** The step being worked on, for progress display. */
    step: int(0).optional(),
    message: str(0, 2000).optional(),
  })
  .meta({ id: 'HeartbeatRequest' });
export type HeartbeatRequest = z.input<typeof HeartbeatRequestSchema>;

export const HeartbeatResponseSchema = z
  .object({
    lease_expires_at: z.string(),
    /** Stop, then POST .../ack {action: 'cancelled'}. */
    cancel_requested: z.boolean(),
    /** Save a checkpoint, stop, then POST .../ack {action: 'paused'}. */
    pause_requested: z.boolean(),
  })
  .meta({ id: 'HeartbeatResponse' });
export type HeartbeatResponse = z.infer<typeof HeartbeatResponseSchema>;

export const RunnerEventSchema = z.strictObject({
  /** Per (job, attempt), from 0; a repeated seq is ignored, so a retried batch never duplicates. */
  seq: int(0),
  type: RunnerEventTypeSchema,
  data: z.record(z.string(), z.unknown()).default({}),
});
export type RunnerEvent = z.input<typeof RunnerEventSchema>;

export const EventsBatchSchema = z
  .strictObject({
    ...leased,
    attempt: int(1),
    events: z.array(RunnerEventSchema).min(1).max(1000),
  })
  .meta({ id: 'EventsBatch' });
export type EventsBatch = z.input<typeof EventsBatchSchema>;

export const MetricsBatchSchema = z
  .strictObject({
    ...leased,
    attempt: int(1),
    /** One point per step; a point for a (job, attempt, step) already stored is ignored. */
    points: z.array(MetricPointSchema).min(1).max(5000),
  })
  .meta({ id: 'MetricsBatch' });
export type MetricsBatch = z.input<typeof MetricsBatchSchema>;

export const BatchResultSchema = z
  .object({ accepted: z.number().int(), duplicates: z.number().int() })
  .meta({ id: 'BatchResult' });
export type BatchResult = z.infer<typeof BatchResultSchema>;

/** POST /v1/runner/jobs/:id/checkpoints: start a multipart upload. */
export const CheckpointInitSchema = z
  .strictObject({
    ...leased,
    step: int(0),
    kind: z.enum(['adapter', 'full']).default('adapter'),
    final: bool().default(false),
    metadata: z.record(z.string(), z.unknown()).default({}),
  })
  .meta({ id: 'CheckpointInit' });
export type CheckpointInit = z.input<typeof CheckpointInitSchema>;

export const CheckpointInitResponseSchema = z
  .object({
    checkpoint_id: z.string(),
    /** PUT each part (≥ 5 MiB except the last) to this URL template, replacing {part_number}. */
    part_url: z.string(),
    min_part_size: z.number().int(),
  })
  .meta({ id: 'CheckpointInitResponse' });

export const PartUploadResponseSchema = UploadedPartSchema.meta({ id: 'UploadedPart' });

export const CheckpointCompleteSchema = z
  .strictObject({
    ...leased,
    parts: z.array(UploadedPartSchema).min(1).max(10_000),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be the hex sha256 of the whole checkpoint'),
    size: int(0),
  })
  .meta({ id: 'CheckpointComplete' });
export type CheckpointComplete = z.input<typeof CheckpointCompleteSchema>;

export const CompleteJobSchema = z
  .strictObject({
    ...leased,
    /** The checkpoint the job ended with (marked final), if any. */
    final_checkpoint_id: str(1, 100).optional(),
    summary: z.record(z.string(), z.unknown()).default({}),
  })
  .meta({ id: 'CompleteJob' });
export type CompleteJob = z.input<typeof CompleteJobSchema>;

export const FailJobSchema = z
  .strictObject({
    ...leased,
    error: z.strictObject({ code: str(1, 100), message: str(1, 4000) }),
    /** true: a transient problem (runner shutting down, OOM) — requeue if retries remain. */
    retryable: bool().default(false),
  })
  .meta({ id: 'FailJob' });
export type FailJob = z.input<typeof FailJobSchema>;

/** The runner acknowledges a cancel or pause request it got from a heartbeat. */
export const AckJobSchema = z
  .strictObject({
    ...leased,
    action: z.enum(['cancelled', 'paused']),
  })
  .meta({ id: 'AckJob' });
export type AckJob = z.input<typeof AckJobSchema>;

export const LeaseStateSchema = z
  .object({ job_id: z.string(), status: z.string(), attempt: z.number().int() })
  .meta({ id: 'LeaseState' });
