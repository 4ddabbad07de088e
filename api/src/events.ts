import type { JobEventType } from '@cgrpo/contract';
import { jobEvents } from './db/schema';
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
 */
export async function recordJobEvent(
  db: Db,
  env: Env,
  job: JobRef,
  type: JobEventType,
  data: Record<string, unknown> = {},
): Promise<void> {
  const createdAt = Date.now();
  const [row] = await db
    .insert(jobEvents)
    .values({
      jobId: job.id,
      accountId: job.accountId,
      type,
      data: JSON.stringify(data),
      attempt: job.attempt,
      createdAt,
    })
    .returning({ id: jobEvents.id });
  // Fan-out to webhook endpoints (only the seven webhook event types; others return at once).
  await publishJobEventWebhooks(env, { job, type, data, eventRowId: row?.id, createdAt });
}
