// The bridge from the job event log to webhooks: recordJobEvent (api/src/events.ts) calls this for
// every event it writes; the webhook event types fan out, the rest (progress, logs, ...) stop here.
// Two job webhooks have no event-log row of their own: `checkpoint.created` (sent beside
// `job.checkpoint`) and `job.metrics_digest` (from metric batches).
import { DEFAULT_METRICS_DIGEST_EVERY_STEPS } from '@cgrpo/contract';
import { and, eq, max, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/d1';
import { jobEvents, jobs } from '../db/schema';
import { webhookEndpoints } from '../db/webhooks-schema';
import { metricsDigest, windowEndsIn } from './digest';
import { newId, publishWebhookEvent, type WebhookEnv, webhookSettings } from './engine';
import { isJobWebhookEventType, type JobWebhookEventType, jobEventPayload } from './payloads';
import { checkEndpointTarget, checkEndpointUrl } from './url-safety';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

interface StoredJobSpec {
  webhook?: { url: string; events: string[] };
  metadata?: unknown;
  metrics_digest?: { every_steps: number };
}

/**
 * The job as webhooks describe it, or null when no endpoint could want its events. One round trip:
 * most accounts have no endpoints, and this runs inside job submission, every lifecycle transition
 * and every metrics batch.
 */
async function jobForWebhooks(env: WebhookEnv, ref: { id: string; accountId: string }) {
  const d = drizzle(env.DB);
  const [[row], [anyEndpoint]] = await d.batch([
    d.select().from(jobs).where(eq(jobs.id, ref.id)),
    d
      .select({ id: webhookEndpoints.id })
      .from(webhookEndpoints)
      .where(and(eq(webhookEndpoints.accountId, ref.accountId), eq(webhookEndpoints.enabled, true)))
      .limit(1),
  ]);
  if (!row) return null;
  const spec = JSON.parse(row.spec) as StoredJobSpec;
  if (!anyEndpoint && !spec.webhook) return null;
  return { row, spec };
}

type JobForWebhooks = NonNullable<Awaited<ReturnType<typeof jobForWebhooks>>>;

async function publishAboutJob(
  env: WebhookEnv,
  { row, spec }: JobForWebhooks,
  event: {
    type: JobWebhookEventType;
    eventId: string;
    sequence: number | null;
    data: Record<string, unknown>;
    now: number;
  },
): Promise<void> {
  const job = {
    id: row.id,
    name: row.name,
    status: row.status,
    algorithm: row.algorithm,
    attempt: row.attempt,
    current_step: row.currentStep,
    total_steps: row.totalSteps,
    error: row.errorCode ? { code: row.errorCode, message: row.errorMessage ?? '' } : null,
    created_at: iso(row.createdAt),
    updated_at: iso(row.updatedAt),
    started_at: iso(row.startedAt),
    finished_at: iso(row.finishedAt),
    spec: { metadata: spec.metadata ?? {} },
  };
  await publishWebhookEvent(env, {
    accountId: row.accountId,
    eventId: event.eventId,
    jobId: row.id,
    jobWebhook: spec.webhook ?? null,
    payload: jobEventPayload({
      type: event.type,
      createdAt: new Date(event.now).toISOString(),
      job,
      sequence: event.sequence,
      data: event.data,
    }),
  });
}

export async function publishJobEventWebhooks(
  env: WebhookEnv,
  input: {
    job: { id: string; accountId: string };
    type: string;
    data: Record<string, unknown>;
    /** The job_events row id (monotonic per job), sent as `data.sequence` when known. */
    eventRowId?: number;
    /** For runner-reported events: their (attempt, seq), which also makes the webhook event id. */
    runnerSeq?: { attempt: number; seq: number };
    createdAt?: number;
  },
): Promise<void> {
  if (!isJobWebhookEventType(input.type)) return;
  const target = await jobForWebhooks(env, input.job);
  if (!target) return;
  // recordJobEvent has just written the event; its row id is the job's event sequence number.
  const sequence =
    input.eventRowId ??
    (
      await drizzle(env.DB)
        .select({ id: max(jobEvents.id) })
        .from(jobEvents)
        .where(
          input.runnerSeq
            ? and(
                eq(jobEvents.jobId, target.row.id),
                eq(jobEvents.attempt, input.runnerSeq.attempt),
                eq(jobEvents.seq, input.runnerSeq.seq),
              )
            : and(eq(jobEvents.jobId, target.row.id), eq(jobEvents.type, input.type)),
        )
    )[0]?.id ??
    null;
  const now = input.createdAt ?? Date.now();
  await publishAboutJob(env, target, {
    type: input.type,
    // A runner's batch may be sent again: its events get ids derived from (job, attempt, seq), so
    // publishing one twice is a no-op. Lifecycle events happen once (conditional UPDATEs).
    eventId: input.runnerSeq
      ? `evt_${target.row.id}_${input.runnerSeq.attempt}_${input.runnerSeq.seq}`
      : newId('evt', now),
    sequence,
    data: input.data,
    now,
  });
}

/**
 * `checkpoint.created`, right after the checkpoint's `job.checkpoint` event: the same fields plus
 * `download_url`, the API route that serves its bytes to the account's API keys. `apiBaseUrl` is
 * where users reach this API (PUBLIC_API_URL, else the origin the runner called).
 */
export async function publishCheckpointCreated(
  env: WebhookEnv,
  jobRef: { id: string; accountId: string },
  checkpoint: { id: string; step: number; final: boolean; size: number | null; sha256: string | null },
  apiBaseUrl: string,
): Promise<void> {
  const target = await jobForWebhooks(env, jobRef);
  if (!target) return;
  // Its sequence is that of the job.checkpoint event it accompanies (one per checkpoint).
  const [event] = await drizzle(env.DB)
    .select({ id: jobEvents.id })
    .from(jobEvents)
    .where(
      and(
        eq(jobEvents.jobId, jobRef.id),
        eq(jobEvents.type, 'job.checkpoint'),
        sql`json_extract(${jobEvents.data}, '$.checkpoint_id') = ${checkpoint.id}`,
      ),
    )
    .limit(1);
  const base = (env.PUBLIC_API_URL ?? apiBaseUrl).replace(/\/+$/, '');
  await publishAboutJob(env, target, {
    type: 'checkpoint.created',
    // A checkpoint is stored once (one per job and step), so its id names the event.
    eventId: `evt_${checkpoint.id}_created`,
    sequence: event?.id ?? null,
    data: {
      checkpoint_id: checkpoint.id,
      step: checkpoint.step,
      final: checkpoint.final,
      size: checkpoint.size,
      sha256: checkpoint.sha256,
      download_url: `${base}/v1/jobs/${encodeURIComponent(jobRef.id)}/checkpoints/${encodeURIComponent(checkpoint.id)}/content`,
    },
    now: Date.now(),
  });
}

/**
 * `job.metrics_digest` for each window a metrics batch completes (steps `minStep..maxStep`), every
 * `spec.metrics_digest.every_steps` steps. The event id is (job, N, window), so a batch posted
 * again, or a resumed attempt reporting the same steps, publishes nothing new.
 */
export async function publishMetricsDigests(
  env: WebhookEnv,
  jobRef: { id: string; accountId: string },
  batch: { minStep: number; maxStep: number },
): Promise<void> {
  const target = await jobForWebhooks(env, jobRef);
  if (!target) return;
  const everySteps = target.spec.metrics_digest?.every_steps ?? DEFAULT_METRICS_DIGEST_EVERY_STEPS;
  const ends = windowEndsIn(batch.minStep, batch.maxStep, everySteps);
  if (ends.length === 0) return;
  const { results } = await env.DB.prepare(
    'SELECT attempt, step, "values" FROM metric_points WHERE job_id = ?1 AND step BETWEEN ?2 AND ?3',
  )
    .bind(jobRef.id, (ends[0] as number) - everySteps + 1, ends.at(-1) as number)
    .all<{ attempt: number; step: number; values: string }>();
  const points = results.map((r) => ({
    attempt: r.attempt,
    step: r.step,
    values: JSON.parse(r.values) as Record<string, number | null>,
  }));
  for (const end of ends) {
    await publishAboutJob(env, target, {
      type: 'job.metrics_digest',
      eventId: `evt_${jobRef.id}_digest_${everySteps}_${end}`,
      // Digests are not in the job's event log, so they have no sequence number of their own.
      sequence: null,
      data: { ...metricsDigest(points, end, everySteps) },
      now: Date.now(),
    });
  }
}

/** Runner-reported events (`POST /v1/runner/jobs/:id/events`) that are webhook events: `job.evaluated`. */
export async function publishRunnerEventWebhooks(
  env: WebhookEnv,
  job: { id: string; accountId: string; attempt: number },
  events: readonly { seq: number; type: string; data?: Record<string, unknown> }[],
): Promise<void> {
  for (const event of events) {
    if (!isJobWebhookEventType(event.type)) continue;
    await publishJobEventWebhooks(env, {
      job,
      type: event.type,
      data: event.data ?? {},
      runnerSeq: { attempt: job.attempt, seq: event.seq },
    });
  }
}

/**
 * For job submission: why a spec's `webhook.url` cannot be used by this deployment (SSRF rules), as a
 * field error, or null. Without this check a refused URL gets no endpoint and the job no webhooks.
 */
export async function jobWebhookUrlProblem(
  env: WebhookEnv,
  url: string,
): Promise<{ path: 'webhook.url'; message: string } | null> {
  const settings = webhookSettings(env);
  const checked = settings.resolver
    ? await checkEndpointTarget(url, settings.policy, settings.resolver)
    : checkEndpointUrl(url, settings.policy);
  return 'url' in checked ? null : { path: 'webhook.url', message: checked.message };
}
