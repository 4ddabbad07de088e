// The bridge from the job event log to webhooks: recordJobEvent (api/src/events.ts) calls this for
// every event it writes; the seven webhook event types fan out, the rest (progress, logs, ...) stop here.
import { and, eq, max } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/d1';
import { jobEvents, jobs } from '../db/schema';
import { webhookEndpoints } from '../db/webhooks-schema';
import { newId, publishWebhookEvent, type WebhookEnv, webhookSettings } from './engine';
import { isJobWebhookEventType, jobEventPayload } from './payloads';
import { checkEndpointTarget, checkEndpointUrl } from './url-safety';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

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
  // One round trip decides whether there is anything to do: most accounts have no endpoints, and
  // this runs inside job submission and every lifecycle transition.
  const d = drizzle(env.DB);
  const [[row], [anyEndpoint]] = await d.batch([
    d.select().from(jobs).where(eq(jobs.id, input.job.id)),
    d
      .select({ id: webhookEndpoints.id })
      .from(webhookEndpoints)
      .where(and(eq(webhookEndpoints.accountId, input.job.accountId), eq(webhookEndpoints.enabled, true)))
      .limit(1),
  ]);
  if (!row) return;
  const spec = JSON.parse(row.spec) as { webhook?: { url: string; events: string[] }; metadata?: unknown };
  if (!anyEndpoint && !spec.webhook) return;
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
                eq(jobEvents.jobId, row.id),
                eq(jobEvents.attempt, input.runnerSeq.attempt),
                eq(jobEvents.seq, input.runnerSeq.seq),
              )
            : and(eq(jobEvents.jobId, row.id), eq(jobEvents.type, input.type)),
        )
    )[0]?.id ??
    null;
  const now = input.createdAt ?? Date.now();
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
    // A runner's batch may be sent again: its events get ids derived from (job, attempt, seq), so
    // publishing one twice is a no-op. Lifecycle events happen once (conditional UPDATEs).
    eventId: input.runnerSeq
      ? `evt_${row.id}_${input.runnerSeq.attempt}_${input.runnerSeq.seq}`
      : newId('evt', now),
    jobId: row.id,
    jobWebhook: spec.webhook ?? null,
    payload: jobEventPayload({
      type: input.type,
      createdAt: new Date(now).toISOString(),
      job,
      sequence,
      data: input.data,
    }),
  });
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
