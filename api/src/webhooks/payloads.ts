// The JSON body of each event type: `{type, timestamp, data}` (Standard Webhooks' recommended shape).
// Job events carry a summary of the job as it is right after the event, the event's per-job
// sequence number, and the event's own data (checkpoint, evaluation, error).
import { WEBHOOK_EVENT_TYPES } from '@cgrpo/contract';
import { type DigestPoint, metricsDigest } from './digest';

/**
 * Every event about one job: the lifecycle events recorded in the job's event log, plus two that
 * exist only as webhooks: `job.metrics_digest` (metrics are their own log) and `checkpoint.created`
 * (the checkpoint with a download link; not matched by `job.*`, so `job.checkpoint` subscribers
 * do not get each checkpoint twice). The same list as a job spec's `webhook.events`.
 */
export const JOB_WEBHOOK_EVENT_TYPES = WEBHOOK_EVENT_TYPES;
export type JobWebhookEventType = (typeof JOB_WEBHOOK_EVENT_TYPES)[number];

/** Account-level events; subscribed to explicitly (not matched by `job.*`). */
export const ACCOUNT_WEBHOOK_EVENT_TYPES = ['webhook.endpoint.disabled'] as const;
/** What an endpoint's `event_types` may contain. */
export const SUBSCRIBABLE_EVENT_TYPES = [
  ...JOB_WEBHOOK_EVENT_TYPES,
  'job.*',
  ...ACCOUNT_WEBHOOK_EVENT_TYPES,
] as const;

export function isJobWebhookEventType(type: string): type is JobWebhookEventType {
  return (JOB_WEBHOOK_EVENT_TYPES as readonly string[]).includes(type);
}

export function endpointWants(eventTypes: readonly string[], type: string): boolean {
  return eventTypes.includes(type) || (type.startsWith('job.') && eventTypes.includes('job.*'));
}

export interface WebhookPayload {
  type: string;
  timestamp: string;
  data: Record<string, unknown>;
}

const JOB_SUMMARY_FIELDS = [
  'id',
  'name',
  'status',
  'algorithm',
  'attempt',
  'current_step',
  'total_steps',
  'error',
  'created_at',
  'updated_at',
  'started_at',
  'finished_at',
] as const;

/** The job as webhooks show it: its state, not its (large) spec; `metadata` from the spec is kept for routing. */
export function jobSummary(job: Record<string, unknown>): Record<string, unknown> {
  const summary: Record<string, unknown> = {};
  for (const field of JOB_SUMMARY_FIELDS) if (field in job) summary[field] = job[field];
  const spec = job.spec as { metadata?: unknown } | undefined;
  if (spec?.metadata !== undefined) summary.metadata = spec.metadata;
  return summary;
}

export function jobEventPayload(input: {
  type: JobWebhookEventType;
  createdAt: string;
  job: Record<string, unknown>;
  /** The job_events id: increases with every event of the job (null when unknown). */
  sequence: number | null;
  data: Record<string, unknown>;
}): WebhookPayload {
  return {
    type: input.type,
    timestamp: input.createdAt,
    data: { ...input.data, job: jobSummary(input.job), sequence: input.sequence },
  };
}

const exampleJob = {
  id: 'job_01JD3Q7R8ZK4V6M2N9P5T0XWYC',
  name: 'gsm8k-qwen3-0.6b',
  algorithm: 'critique-grpo',
  attempt: 1,
  current_step: null as number | null,
  total_steps: 400,
  error: null as { code: string; message: string } | null,
  created_at: '2026-11-22T08:00:00.000Z',
  updated_at: '2026-11-22T08:00:00.000Z',
  started_at: null as string | null,
  finished_at: null as string | null,
  metadata: { team: 'math' },
};

/** Ten steps of a made-up run (reward climbing, an evaluation on the last step), for the digest example. */
function exampleSteps(from: number): DigestPoint[] {
  const reward = [0.41, 0.44, 0.43, 0.47, 0.5, 0.49, 0.52, 0.55, 0.54, 0.58];
  const pass1 = [0.375, 0.4, 0.4, 0.425, 0.45, 0.45, 0.475, 0.5, 0.5, 0.525];
  const zeroSignal = [3, 2, 3, 2, 1, 2, 1, 1, 0, 1];
  return reward.map((r, i) => ({
    attempt: 1,
    step: from + i,
    values: {
      'reward/mean': r,
      'pass@1/train': pass1[i] as number,
      'refinement/success_rate': [0.5, 0.25, 0.75][i % 3] as number,
      'groups/zero_signal': zeroSignal[i] as number,
      loss: 0.25 - i / 100,
      'response_length/mean': 180 + 4 * i,
      ...(i === reward.length - 1 ? { 'eval/pass@1': 0.5 } : {}),
    },
  }));
}

/** An example built by the same function that builds real deliveries (so docs cannot drift). */
function example(
  type: JobWebhookEventType,
  sequence: number | null,
  job: Partial<typeof exampleJob> & { status: string },
  data: Record<string, unknown> = {},
): WebhookPayload {
  const { metadata, ...state } = { ...exampleJob, ...job };
  return jobEventPayload({
    type,
    createdAt: state.updated_at,
    job: { ...state, spec: { metadata } },
    sequence,
    data,
  });
}

/** One example body per event type, used by the OpenAPI document and docs/webhooks.md. */
export const PAYLOAD_EXAMPLES: Record<string, WebhookPayload> = {
  'job.queued': example('job.queued', 1, { status: 'queued' }),
  'job.started': example(
    'job.started',
    2,
    { status: 'running', started_at: '2026-11-22T08:00:05.000Z', updated_at: '2026-11-22T08:00:05.000Z' },
    { attempt: 1, runner_id: 'run_01JD3QA2' },
  ),
  'job.checkpoint': example(
    'job.checkpoint',
    7,
    {
      status: 'running',
      current_step: 50,
      started_at: '2026-11-22T08:00:05.000Z',
      updated_at: '2026-11-22T08:20:00.000Z',
    },
    { checkpoint_id: 'ckpt_01JD3RB1', step: 50, final: false, size: 18874368, sha256: '9f86d081884c7d65…' },
  ),
  'checkpoint.created': example(
    'checkpoint.created',
    7,
    {
      status: 'running',
      current_step: 50,
      started_at: '2026-11-22T08:00:05.000Z',
      updated_at: '2026-11-22T08:20:00.000Z',
    },
    {
      checkpoint_id: 'ckpt_01JD3RB1',
      step: 50,
      final: false,
      size: 18874368,
      sha256: '9f86d081884c7d65…',
      download_url:
        'https://cgrpo.example.com/v1/jobs/job_01JD3Q7R8ZK4V6M2N9P5T0XWYC/checkpoints/ckpt_01JD3RB1/content',
    },
  ),
  'job.metrics_digest': example(
    'job.metrics_digest',
    null,
    {
      status: 'running',
      current_step: 20,
      started_at: '2026-11-22T08:00:05.000Z',
      updated_at: '2026-11-22T08:09:00.000Z',
    },
    // Ten steps as a runner reports them, through the builder real digests use.
    { ...metricsDigest(exampleSteps(11), 20, 10) },
  ),
  'job.evaluated': example(
    'job.evaluated',
    8,
    {
      status: 'running',
      current_step: 50,
      started_at: '2026-11-22T08:00:05.000Z',
      updated_at: '2026-11-22T08:21:00.000Z',
    },
    { step: 50, metrics: { 'eval/accuracy': 0.62, 'eval/pass@4': 0.81 } },
  ),
  'job.succeeded': example('job.succeeded', 30, {
    status: 'succeeded',
    current_step: 400,
    started_at: '2026-11-22T08:00:05.000Z',
    updated_at: '2026-11-22T10:40:00.000Z',
    finished_at: '2026-11-22T10:40:00.000Z',
  }),
  'job.failed': example(
    'job.failed',
    12,
    {
      status: 'failed',
      current_step: 120,
      error: { code: 'verifier_failure_ratio', message: '31% of verifier calls failed (limit 20%)' },
      updated_at: '2026-11-22T09:00:00.000Z',
      finished_at: '2026-11-22T09:00:00.000Z',
    },
    { error: { code: 'verifier_failure_ratio', message: '31% of verifier calls failed (limit 20%)' } },
  ),
  'job.cancelled': example('job.cancelled', 5, {
    status: 'cancelled',
    current_step: 10,
    updated_at: '2026-11-22T08:10:00.000Z',
    finished_at: '2026-11-22T08:10:00.000Z',
  }),
  'job.budget_reached': example(
    'job.budget_reached',
    9,
    {
      status: 'running',
      current_step: 61,
      started_at: '2026-11-22T08:00:05.000Z',
      updated_at: '2026-11-22T08:25:00.000Z',
    },
    {
      budget: 'critic_tokens',
      limit: 500000,
      used: 503808,
      reason: 'job_budget',
      step: 61,
      action: 'pause',
      usage: {
        generated_tokens: 2011520,
        trained_tokens: 1530112,
        runner_seconds: 1495,
        critic_tokens: 503808,
        cost_usd: 1.42,
      },
      message:
        'critic_tokens reached 503808 (cap 500000); the job pauses — raise the cap with POST /v1/jobs/job_01JD3Q7R8ZK4V6M2N9P5T0XWYC/budgets and resume',
    },
  ),
  'job.alarm': example(
    'job.alarm',
    10,
    {
      status: 'running',
      current_step: 80,
      started_at: '2026-11-22T08:00:05.000Z',
      updated_at: '2026-11-22T08:31:00.000Z',
    },
    {
      rule: 'entropy',
      message: 'entropy below 0.01 on each of the last 3 steps (collapse)',
      metric: 'entropy',
      window: { from_step: 78, to_step: 80 },
      values: [0.008, 0.004, 0.002],
      threshold: 0.01,
      action: 'event',
    },
  ),
  'webhook.test': {
    type: 'webhook.test',
    timestamp: '2026-11-22T08:00:00.000Z',
    data: { endpoint_id: 'whe_01JD3Q9', message: 'This is a test event from cgrpo.' },
  },
  'webhook.endpoint.disabled': {
    type: 'webhook.endpoint.disabled',
    timestamp: '2026-11-27T08:00:00.000Z',
    data: {
      endpoint_id: 'whe_01JD3Q9',
      url: 'https://hooks.example.com/cgrpo',
      reason: 'failing',
      failing_since: '2026-11-22T08:00:00.000Z',
      message: 'every delivery failed for 5 days; re-enable with PATCH {"enabled": true}',
    },
  },
};
