// The delivery engine: fan-out of an event to the endpoints that want it, the Queue consumer that
// makes one attempt per message, retries, dead-lettering, redelivery, and the cron safety net.
//
// Every delivery is a row whose status only moves by conditional UPDATEs, so a message delivered
// twice by the Queue (at-least-once) or a cron re-enqueue never sends one attempt twice:
//   pending ──claim──► sending ──2xx──► delivered
//      ▲                 │ failure, attempts left ──► retrying ──(delay)──► claim again
//      └── redeliver ◄───┴── failure, attempts used up, 410, endpoint disabled ──► dead
// Ordering: a delivery waits while an earlier delivery (lower seq) of the same job to the same
// endpoint is still pending, sending or retrying; when that one ends, it wakes the next.
import { and, asc, eq, gt, inArray, isNull, lt, or, sql } from 'drizzle-orm';
import { type DrizzleD1Database, drizzle } from 'drizzle-orm/d1';
import {
  type WebhookDeliveryRow,
  type WebhookEndpointRow,
  webhookAttempts,
  webhookDeliveries,
  webhookEndpoints,
  webhookEvents,
  webhookJobSecrets,
} from '../db/webhooks-schema';
import { isProduction } from '../env';
import { endpointWants, type WebhookPayload } from './payloads';
import { nextRetryDelaySeconds, retrySchedule } from './schedule';
import { attemptDelivery } from './send';
import { newWebhookSecret } from './signing';
import {
  checkEndpointTarget,
  checkEndpointUrl,
  dohResolver,
  type Resolver,
  type UrlPolicy,
} from './url-safety';

export interface WebhookEnv {
  DB: D1Database;
  JOBS_QUEUE: Queue;
  ENVIRONMENT?: string;
  /** "true" lets endpoints point at loopback (local development only; ignored in production). */
  WEBHOOKS_ALLOW_LOOPBACK?: string;
  /** Comma-separated retry delays in seconds, replacing the production schedule (tests, experiments). */
  WEBHOOKS_RETRY_SCHEDULE?: string;
  /** Where users reach the API (links in payloads, e.g. `checkpoint.created`); default: the request's origin. */
  PUBLIC_API_URL?: string;
}

export const WEBHOOK_DELIVER_KIND = 'webhook.deliver';
/** One delivery (retries, redeliveries) or all deliveries of one event (fan-out: different endpoints, sent concurrently). */
export type WebhookDeliverMessage =
  | { kind: typeof WEBHOOK_DELIVER_KIND; delivery_id: string }
  | { kind: typeof WEBHOOK_DELIVER_KIND; delivery_ids: string[] };

export const SECRET_OVERLAP_MS = 24 * 3600 * 1000;
export const DISABLE_AFTER_FAILING_MS = 5 * 24 * 3600 * 1000;
/** A claim outlives the 15 s attempt timeout with margin; after it the cron hands the delivery back. */
export const SENDING_LEASE_MS = 60_000;
/** Cloudflare Queues' largest `delaySeconds`; longer waits are re-enqueued in hops. */
export const MAX_QUEUE_DELAY_SECONDS = 12 * 3600;
/** How late a due delivery may be before the cron re-enqueues it (a lost or failed Queue send). */
export const SWEEP_GRACE_MS = 60_000;

export interface WebhookSettings {
  production: boolean;
  policy: UrlPolicy;
  schedule: readonly number[];
  /** Resolves host names before each attempt in production; null skips DNS checks (development). */
  resolver: Resolver | null;
  clock: () => number;
  random: () => number;
}

export function webhookSettings(env: WebhookEnv, overrides: Partial<WebhookSettings> = {}): WebhookSettings {
  const production = isProduction(env);
  return {
    production,
    policy: { allowLoopback: !production && env.WEBHOOKS_ALLOW_LOOPBACK === 'true' },
    schedule: retrySchedule(env.WEBHOOKS_RETRY_SCHEDULE),
    resolver: production ? dohResolver() : null,
    clock: Date.now,
    random: Math.random,
    ...overrides,
  };
}

type Db = DrizzleD1Database<Record<string, never>>;
const db = (env: WebhookEnv): Db => drizzle(env.DB);

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** Time-sortable id: 10 chars of milliseconds + 16 random chars (a ULID), with a type prefix. */
export function newId(prefix: string, now = Date.now()): string {
  let time = '';
  for (let t = now, i = 0; i < 10; i++, t = Math.floor(t / 32)) time = CROCKFORD[t % 32] + time;
  const random = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => CROCKFORD[b % 32]).join('');
  return `${prefix}_${time}${random}`;
}

export function liveSecrets(
  row: { secret: string | null; previousSecret: string | null; previousSecretExpiresAt: number | null },
  now: number,
): string[] {
  const secrets = row.secret ? [row.secret] : [];
  if (row.previousSecret && (row.previousSecretExpiresAt ?? 0) > now) secrets.push(row.previousSecret);
  return secrets;
}

async function enqueue(env: WebhookEnv, items: { id: string; delaySeconds?: number }[]): Promise<void> {
  for (let i = 0; i < items.length; i += 100) {
    await env.JOBS_QUEUE.sendBatch(
      items.slice(i, i + 100).map(({ id, delaySeconds }) => ({
        body: { kind: WEBHOOK_DELIVER_KIND, delivery_id: id } satisfies WebhookDeliverMessage,
        delaySeconds: Math.min(MAX_QUEUE_DELAY_SECONDS, Math.max(0, Math.ceil(delaySeconds ?? 0))),
      })),
    );
  }
}

// ---- fan-out ----------------------------------------------------------------------------------

export interface WebhookEventInput {
  accountId: string;
  /** Stable event id: the `webhook-id` of every delivery of this event. */
  eventId: string;
  jobId: string | null;
  payload: WebhookPayload;
  /** The job spec's `webhook` field: creates (once) the job's own endpoint. */
  jobWebhook?: { url: string; events: readonly string[] } | null;
  /** Send only to this endpoint, whatever its filter (test events). */
  endpointId?: string;
}

/** Makes sure the account has the secret per-job endpoints sign with; returns nothing (shown only by rotation). */
async function ensureJobSecret(env: WebhookEnv, accountId: string, now: number): Promise<void> {
  await db(env)
    .insert(webhookJobSecrets)
    .values({ accountId, secret: newWebhookSecret(), updatedAt: now })
    .onConflictDoNothing();
}

async function ensureJobEndpoint(
  env: WebhookEnv,
  settings: WebhookSettings,
  input: WebhookEventInput & { jobId: string; jobWebhook: { url: string; events: readonly string[] } },
  now: number,
): Promise<void> {
  // A URL this deployment refuses gets no endpoint; the job API rejects such specs up front.
  if (!('url' in checkEndpointUrl(input.jobWebhook.url, settings.policy))) return;
  await ensureJobSecret(env, input.accountId, now);
  await db(env)
    .insert(webhookEndpoints)
    .values({
      id: newId('whe', now),
      accountId: input.accountId,
      jobId: input.jobId,
      url: input.jobWebhook.url,
      description: `job ${input.jobId}`,
      eventTypes: [...input.jobWebhook.events],
      secret: null,
      createdAt: now,
      updatedAt: now,
    })
    .onConflictDoNothing();
}

/**
 * Stores the event and one delivery per endpoint that wants it, then enqueues them. Idempotent on
 * `eventId`: publishing the same event again creates nothing and sends nothing.
 */
export async function publishWebhookEvent(
  env: WebhookEnv,
  input: WebhookEventInput,
  settings = webhookSettings(env),
): Promise<{ deliveryIds: string[] }> {
  const now = settings.clock();
  const d = db(env);
  if (input.jobId && input.jobWebhook) {
    await ensureJobEndpoint(
      env,
      settings,
      { ...input, jobId: input.jobId, jobWebhook: input.jobWebhook },
      now,
    );
  }
  const candidates = await d
    .select()
    .from(webhookEndpoints)
    .where(
      and(
        eq(webhookEndpoints.accountId, input.accountId),
        eq(webhookEndpoints.enabled, true),
        input.endpointId
          ? eq(webhookEndpoints.id, input.endpointId)
          : input.jobId
            ? or(isNull(webhookEndpoints.jobId), eq(webhookEndpoints.jobId, input.jobId))
            : isNull(webhookEndpoints.jobId),
      ),
    );
  const targets = input.endpointId
    ? candidates
    : candidates.filter((e) => endpointWants(e.eventTypes, input.payload.type));
  const isAccountEvent = !input.jobId;
  if (targets.length === 0 && !isAccountEvent) return { deliveryIds: [] };

  await d
    .insert(webhookEvents)
    .values({
      id: input.eventId,
      accountId: input.accountId,
      type: input.payload.type,
      jobId: input.jobId,
      payload: JSON.stringify(input.payload),
      createdAt: now,
    })
    .onConflictDoNothing();

  const created: string[] = [];
  // 13 columns a row: 7 rows stay under D1's 100 bound parameters per statement.
  for (let i = 0; i < targets.length; i += 7) {
    const rows = await d
      .insert(webhookDeliveries)
      .values(
        targets.slice(i, i + 7).map((endpoint) => ({
          id: newId('whd', now),
          accountId: input.accountId,
          endpointId: endpoint.id,
          eventId: input.eventId,
          eventType: input.payload.type,
          jobId: input.jobId,
          status: 'pending' as const,
          nextAttemptAt: now,
          createdAt: now,
          updatedAt: now,
        })),
      )
      .onConflictDoNothing()
      .returning({ id: webhookDeliveries.id });
    created.push(...rows.map((r) => r.id));
  }
  for (let i = 0; i < created.length; i += 100) {
    const body: WebhookDeliverMessage = {
      kind: WEBHOOK_DELIVER_KIND,
      delivery_ids: created.slice(i, i + 100),
    };
    await env.JOBS_QUEUE.send(body);
  }
  return { deliveryIds: created };
}

// ---- consumer ---------------------------------------------------------------------------------

export type AttemptOutcome =
  | 'delivered'
  | 'retrying'
  | 'dead'
  | 'already-final'
  | 'busy'
  | 'not-due'
  | 'blocked'
  | 'claimed-elsewhere'
  | 'missing';

/** The next unfinished delivery of the same job to the same endpoint, to wake once this one is final. */
function nextInLine(env: WebhookEnv, delivery: WebhookDeliveryRow) {
  return db(env)
    .select({ id: webhookDeliveries.id, nextAttemptAt: webhookDeliveries.nextAttemptAt })
    .from(webhookDeliveries)
    .where(
      and(
        eq(webhookDeliveries.endpointId, delivery.endpointId),
        eq(webhookDeliveries.jobId, delivery.jobId ?? ''),
        gt(webhookDeliveries.seq, delivery.seq),
        inArray(webhookDeliveries.status, ['pending', 'retrying']),
      ),
    )
    .orderBy(asc(webhookDeliveries.seq))
    .limit(1);
}

async function wake(env: WebhookEnv, next: { id: string; nextAttemptAt: number } | undefined, now: number) {
  if (next) await enqueue(env, [{ id: next.id, delaySeconds: (next.nextAttemptAt - now) / 1000 }]);
}

async function wakeNext(env: WebhookEnv, delivery: WebhookDeliveryRow, now: number): Promise<void> {
  if (delivery.jobId) await wake(env, (await nextInLine(env, delivery))[0], now);
}

async function finish(
  env: WebhookEnv,
  delivery: WebhookDeliveryRow,
  status: 'dead',
  lastError: string,
  now: number,
): Promise<void> {
  await db(env)
    .update(webhookDeliveries)
    .set({ status, lastError, leaseUntil: null, updatedAt: now })
    .where(eq(webhookDeliveries.id, delivery.id));
  await wakeNext(env, delivery, now);
}

/** Disables an endpoint once (conditional on it being enabled) and tells the account. */
export async function disableEndpoint(
  env: WebhookEnv,
  settings: WebhookSettings,
  endpoint: WebhookEndpointRow,
  reason: 'gone' | 'failing',
  now: number,
): Promise<void> {
  const [changed] = await db(env)
    .update(webhookEndpoints)
    .set({ enabled: false, disabledReason: reason, disabledAt: now, updatedAt: now })
    .where(and(eq(webhookEndpoints.id, endpoint.id), eq(webhookEndpoints.enabled, true)))
    .returning({ id: webhookEndpoints.id });
  if (!changed) return;
  await publishWebhookEvent(
    env,
    {
      accountId: endpoint.accountId,
      eventId: newId('evt', now),
      jobId: null,
      payload: {
        type: 'webhook.endpoint.disabled',
        timestamp: new Date(now).toISOString(),
        data: {
          endpoint_id: endpoint.id,
          url: endpoint.url,
          reason,
          failing_since: endpoint.failingSince ? new Date(endpoint.failingSince).toISOString() : null,
          message:
            reason === 'gone'
              ? 'the endpoint answered 410 Gone; re-enable with PATCH {"enabled": true}'
              : 'every delivery failed for 5 days; re-enable with PATCH {"enabled": true}',
        },
      },
    },
    settings,
  );
}

/**
 * One attempt of one delivery, if it is due, unblocked and not claimed by someone else.
 * Three D1 round trips on the common path: load (delivery, endpoint, body, job secret), claim
 * (which also checks ordering), and one batch recording the attempt and the outcome.
 */
export async function processDelivery(
  env: WebhookEnv,
  deliveryId: string,
  settings = webhookSettings(env),
): Promise<AttemptOutcome> {
  const d = db(env);
  const now = settings.clock();
  const [loaded] = await d
    .select({
      delivery: webhookDeliveries,
      endpoint: webhookEndpoints,
      payload: webhookEvents.payload,
      jobSecret: webhookJobSecrets,
    })
    .from(webhookDeliveries)
    .leftJoin(webhookEndpoints, eq(webhookEndpoints.id, webhookDeliveries.endpointId))
    .leftJoin(webhookEvents, eq(webhookEvents.id, webhookDeliveries.eventId))
    .leftJoin(webhookJobSecrets, eq(webhookJobSecrets.accountId, webhookDeliveries.accountId))
    .where(eq(webhookDeliveries.id, deliveryId));
  if (!loaded) return 'missing';
  const { delivery, endpoint } = loaded;
  if (delivery.status === 'delivered' || delivery.status === 'dead') return 'already-final';
  if (delivery.status === 'sending' && (delivery.leaseUntil ?? 0) > now) return 'busy';
  if (delivery.nextAttemptAt > now + 1000) {
    // Early: the Queue's delay is capped at 12 h, or a duplicate message; wait the rest.
    await enqueue(env, [{ id: delivery.id, delaySeconds: (delivery.nextAttemptAt - now) / 1000 }]);
    return 'not-due';
  }
  if (!endpoint?.enabled) {
    await finish(
      env,
      delivery,
      'dead',
      endpoint ? `endpoint disabled (${endpoint.disabledReason})` : 'endpoint deleted',
      now,
    );
    return 'dead';
  }
  // The claim fails when another consumer got there first or, for job events, while an earlier
  // delivery of the same job to this endpoint is unfinished (that one wakes this one when it ends).
  const [claimed] = await d
    .update(webhookDeliveries)
    .set({ status: 'sending', leaseUntil: now + SENDING_LEASE_MS, updatedAt: now })
    .where(
      and(
        eq(webhookDeliveries.id, delivery.id),
        eq(webhookDeliveries.status, delivery.status),
        eq(webhookDeliveries.attempts, delivery.attempts),
        delivery.jobId
          ? sql`not exists (select 1 from webhook_deliveries e where e.endpoint_id = ${delivery.endpointId}
              and e.job_id = ${delivery.jobId} and e.seq < ${delivery.seq}
              and e.status in ('pending', 'sending', 'retrying'))`
          : undefined,
      ),
    )
    .returning({ id: webhookDeliveries.id });
  if (!claimed) return delivery.jobId ? 'blocked' : 'claimed-elsewhere';

  const attempt = delivery.attempts + 1;
  const round = delivery.roundAttempts + 1;
  const target = settings.resolver
    ? await checkEndpointTarget(endpoint.url, settings.policy, settings.resolver)
    : checkEndpointUrl(endpoint.url, settings.policy);
  const sentAt = Math.floor(settings.clock() / 1000);
  const result =
    'url' in target
      ? await attemptDelivery({
          url: endpoint.url,
          eventId: delivery.eventId,
          body: loaded.payload ?? '{}',
          secrets: liveSecrets(endpoint.secret ? endpoint : (loaded.jobSecret ?? endpoint), now),
          timestampSeconds: sentAt,
        })
      : {
          ok: false,
          statusCode: null,
          latencyMs: 0,
          responseBody: '',
          error: target.message,
          retryAfterSeconds: null,
        };
  const after = settings.clock();

  const gone = result.statusCode === 410;
  const delay =
    result.ok || gone
      ? null
      : nextRetryDelaySeconds(round, settings.schedule, result.retryAfterSeconds, settings.random);
  const lastError = result.ok
    ? null
    : gone
      ? 'endpoint answered 410 Gone'
      : (result.error ?? `HTTP ${result.statusCode}`);
  const outcome: AttemptOutcome = result.ok ? 'delivered' : delay === null ? 'dead' : 'retrying';
  const recordAttempt = d
    .insert(webhookAttempts)
    .values({
      deliveryId: delivery.id,
      attempt,
      timestamp: sentAt,
      statusCode: result.statusCode,
      latencyMs: result.latencyMs,
      responseBody: result.responseBody,
      error: result.error,
      createdAt: after,
    })
    .onConflictDoNothing();
  const recordOutcome = d
    .update(webhookDeliveries)
    .set({
      attempts: attempt,
      roundAttempts: round,
      lastStatusCode: result.statusCode,
      lastError,
      leaseUntil: null,
      updatedAt: after,
      status: outcome,
      ...(result.ok ? { deliveredAt: after } : {}),
      ...(delay !== null ? { nextAttemptAt: after + delay * 1000 } : {}),
    })
    .where(eq(webhookDeliveries.id, delivery.id));
  if (outcome !== 'retrying' && delivery.jobId) {
    const [, , next] = await d.batch([recordAttempt, recordOutcome, nextInLine(env, delivery)]);
    await wake(env, next[0], after);
  } else {
    await d.batch([recordAttempt, recordOutcome]);
  }
  if (delay !== null) await enqueue(env, [{ id: delivery.id, delaySeconds: delay }]);

  if (result.ok) {
    if (endpoint.failingSince !== null) {
      await d
        .update(webhookEndpoints)
        .set({ failingSince: null })
        .where(eq(webhookEndpoints.id, endpoint.id));
    }
  } else if (gone) {
    await disableEndpoint(env, settings, endpoint, 'gone', after);
  } else {
    const [health] = await d
      .update(webhookEndpoints)
      .set({ failingSince: sql`coalesce(${webhookEndpoints.failingSince}, ${after})` })
      .where(eq(webhookEndpoints.id, endpoint.id))
      .returning();
    if (health?.failingSince != null && after - health.failingSince >= DISABLE_AFTER_FAILING_MS) {
      await disableEndpoint(env, settings, health, 'failing', after);
    }
  }
  return outcome;
}

/**
 * The Queue consumer's handler for `webhook.deliver` messages. The consumer takes a batch's
 * messages one after another in order, so one job's events (fanned out one after another) keep
 * their order; the deliveries of one event go to different endpoints and are sent concurrently.
 */
export async function handleWebhookDeliverMessage(
  env: WebhookEnv,
  body: { readonly [field: string]: unknown },
): Promise<void> {
  const ids = Array.isArray(body.delivery_ids) ? body.delivery_ids : [body.delivery_id];
  if (ids.length === 0 || ids.some((id) => typeof id !== 'string')) {
    console.error(`webhook.deliver message without delivery ids: ${JSON.stringify(body)}; dropped`);
    return;
  }
  // A thrown error retries the whole message; deliveries already finished are skipped then.
  await Promise.all(ids.map((id) => processDelivery(env, id as string)));
}

// ---- cron, redelivery, recovery ---------------------------------------------------------------

/** The cron's safety net: takes back claims of crashed consumers and re-enqueues overdue deliveries. */
export async function sweepWebhookDeliveries(
  env: WebhookEnv,
  settings = webhookSettings(env),
): Promise<number> {
  const d = db(env);
  const now = settings.clock();
  const reclaimed = await d
    .update(webhookDeliveries)
    .set({ status: 'retrying', leaseUntil: null, nextAttemptAt: now, updatedAt: now })
    .where(and(eq(webhookDeliveries.status, 'sending'), lt(webhookDeliveries.leaseUntil, now)))
    .returning({ id: webhookDeliveries.id });
  const overdue = await d
    .select({ id: webhookDeliveries.id })
    .from(webhookDeliveries)
    .where(
      and(
        inArray(webhookDeliveries.status, ['pending', 'retrying']),
        lt(webhookDeliveries.nextAttemptAt, now - SWEEP_GRACE_MS),
        sql`not exists (select 1 from webhook_deliveries e where e.endpoint_id = ${webhookDeliveries.endpointId}
          and e.job_id = ${webhookDeliveries.jobId} and e.seq < ${webhookDeliveries.seq}
          and e.status in ('pending', 'sending', 'retrying'))`,
      ),
    )
    .orderBy(asc(webhookDeliveries.nextAttemptAt))
    .limit(500);
  await enqueue(env, [...reclaimed, ...overdue]);
  return reclaimed.length + overdue.length;
}

/**
 * Sends a delivery again now. A finished one (delivered or dead) starts a new round with the full
 * attempt budget; one still waiting for a retry is moved to now. Returns the row, or why not.
 */
export async function redeliver(
  env: WebhookEnv,
  delivery: WebhookDeliveryRow,
  settings = webhookSettings(env),
): Promise<{ ok: true; delivery: WebhookDeliveryRow } | { ok: false; code: string; message: string }> {
  const now = settings.clock();
  if (delivery.status === 'sending') {
    return {
      ok: false,
      code: 'delivery_in_flight',
      message: 'this delivery is being sent right now; look again in a few seconds',
    };
  }
  const [endpoint] = await db(env)
    .select()
    .from(webhookEndpoints)
    .where(eq(webhookEndpoints.id, delivery.endpointId));
  if (!endpoint?.enabled) {
    return {
      ok: false,
      code: 'webhook_endpoint_disabled',
      message:
        'the endpoint is disabled or deleted; enable it with PATCH /v1/webhooks/endpoints/:id {"enabled": true} first',
    };
  }
  const finished = delivery.status === 'delivered' || delivery.status === 'dead';
  const [row] = await db(env)
    .update(webhookDeliveries)
    .set({
      status: finished ? 'pending' : delivery.status,
      roundAttempts: finished ? 0 : delivery.roundAttempts,
      nextAttemptAt: now,
      updatedAt: now,
    })
    .where(and(eq(webhookDeliveries.id, delivery.id), eq(webhookDeliveries.status, delivery.status)))
    .returning();
  if (!row)
    return {
      ok: false,
      code: 'delivery_changed',
      message: 'the delivery changed while redelivering; try again',
    };
  await enqueue(env, [{ id: row.id }]);
  return { ok: true, delivery: row };
}

/** Re-sends every dead delivery of an endpoint created in [since, until). Returns how many. */
export async function recoverEndpoint(
  env: WebhookEnv,
  endpointId: string,
  since: number,
  until: number,
  settings = webhookSettings(env),
): Promise<number> {
  const now = settings.clock();
  const rows = await db(env)
    .update(webhookDeliveries)
    .set({ status: 'pending', roundAttempts: 0, nextAttemptAt: now, updatedAt: now })
    .where(
      and(
        eq(webhookDeliveries.endpointId, endpointId),
        eq(webhookDeliveries.status, 'dead'),
        sql`${webhookDeliveries.createdAt} >= ${since}`,
        lt(webhookDeliveries.createdAt, until),
      ),
    )
    .returning({ id: webhookDeliveries.id, seq: webhookDeliveries.seq });
  await enqueue(
    env,
    rows.sort((a, b) => a.seq - b.seq),
  );
  return rows.length;
}
