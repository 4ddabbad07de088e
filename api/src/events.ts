import type { JobEventType } from '@cgrpo/contract';
import type { Db, Env } from './env';
import { publishJobEventWebhooks } from './webhooks/job-events';

/** The job an event is about: enough to route it without another query. */
export interface JobRef {
  id: string;
  accountId: string;
  attempt: number;
}

/**
 * The one place a lifecycle event is written. Every status transition calls this right after its
 * conditional UPDATE succeeds, so the event log (and everything fed from it: GET .../events, the
 * SSE stream, webhooks) sees each transition exactly once.
 *
 * `alongside` statements run in the same D1 batch (one round trip, one transaction), before the
 * event; the event is written only if the job row exists after them — so a job INSERT that was
 * skipped (ON CONFLICT DO NOTHING) records no event. Their results are returned.
 */
export async function recordJobEvent(
  _db: Db,
  env: Env,
  job: JobRef,
  type: JobEventType,
  data: Record<string, unknown> = {},
  alongside: D1PreparedStatement[] = [],
): Promise<{ recorded: boolean; alongside: D1Result[] }> {
  const createdAt = Date.now();
  const insert = env.DB.prepare(
    `INSERT INTO job_events (job_id, account_id, type, data, attempt, created_at)
     SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?1)
     RETURNING id`,
  ).bind(job.id, job.accountId, type, JSON.stringify(data), job.attempt, createdAt);
  const results = await env.DB.batch<{ id: number }>([...alongside, insert]);
  const eventRowId = results.at(-1)?.results[0]?.id;
  if (eventRowId === undefined) return { recorded: false, alongside: results.slice(0, -1) };
  // Fan-out to webhook endpoints (only the seven webhook event types; others return at once).
  await publishJobEventWebhooks(env, { job, type, data, eventRowId, createdAt });
  return { recorded: true, alongside: results.slice(0, -1) };
}
