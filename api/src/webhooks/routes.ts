// /v1/webhooks: endpoints (CRUD, secret rotation, test, recover), deliveries (log, redeliver),
// the per-job endpoints' secret, and the account's webhook events.
import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { and, desc, eq, inArray, isNull, lt } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/d1';
import { z } from 'zod';
import { userOf } from '../auth';
import {
  type WebhookAttemptRow,
  type WebhookDeliveryRow,
  type WebhookEndpointRow,
  webhookAttempts,
  webhookDeliveries,
  webhookEndpoints,
  webhookEvents,
  webhookJobSecrets,
} from '../db/webhooks-schema';
import type { AppEnv } from '../env';
import { ApiError, notFound } from '../errors';
import { bearerSecurity, conflictError, errors, json, jsonBody, router } from '../openapi';
import {
  newId,
  publishWebhookEvent,
  recoverEndpoint,
  redeliver,
  SECRET_OVERLAP_MS,
  type WebhookEnv,
  webhookSettings,
} from './engine';
import { PAYLOAD_EXAMPLES, SUBSCRIBABLE_EVENT_TYPES } from './payloads';
import { newWebhookSecret } from './signing';
import { checkEndpointTarget, checkEndpointUrl } from './url-safety';

const MAX_ENDPOINTS_PER_ACCOUNT = 50;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

// ---- schemas ----------------------------------------------------------------------------------

const EventTypeSchema = z.enum(SUBSCRIBABLE_EVENT_TYPES, {
  error: `must be one of ${SUBSCRIBABLE_EVENT_TYPES.join(', ')}`,
});

const EndpointSchema = z
  .object({
    id: z.string().meta({ example: 'whe_01JD3Q9ZK4V6M2N9P5T0XWYCAB' }),
    url: z.string().meta({ example: 'https://hooks.example.com/cgrpo' }),
    description: z.string(),
    event_types: z.array(z.string()).meta({ example: ['job.succeeded', 'job.failed'] }),
    enabled: z.boolean(),
    /** `manual`, `gone` (the endpoint answered 410) or `failing` (every delivery failed for 5 days). */
    disabled_reason: z.string().nullable(),
    disabled_at: z.string().nullable(),
    /** Set for a job's own endpoint (from the job spec's `webhook`); it receives only that job's events. */
    job_id: z.string().nullable(),
    failing_since: z.string().nullable(),
    /** While set, deliveries carry a second signature made with the previous secret. */
    previous_secret_expires_at: z.string().nullable(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .meta({ id: 'WebhookEndpoint' });

const EndpointWithSecretSchema = EndpointSchema.extend({
  /** Shown only in this response: store it now. */
  secret: z.string().meta({ example: 'whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD' }),
}).meta({ id: 'WebhookEndpointWithSecret' });

const CreateEndpointSchema = z
  .strictObject({
    url: z.string().min(1).max(2048).meta({ example: 'https://hooks.example.com/cgrpo' }),
    description: z.string().max(500).default(''),
    event_types: z.array(EventTypeSchema).min(1).max(20).default(['job.*']),
    enabled: z.boolean().default(true),
  })
  .meta({ id: 'CreateWebhookEndpoint' });

const UpdateEndpointSchema = z
  .strictObject({
    url: z.string().min(1).max(2048).optional(),
    description: z.string().max(500).optional(),
    event_types: z.array(EventTypeSchema).min(1).max(20).optional(),
    /** `true` re-enables an endpoint disabled by a 410 or by 5 days of failures. */
    enabled: z.boolean().optional(),
  })
  .meta({ id: 'UpdateWebhookEndpoint' });

const AttemptSchema = z
  .object({
    attempt: z.number().int(),
    /** The `webhook-timestamp` sent with this attempt. */
    webhook_timestamp: z.number().int(),
    /** Null when no HTTP response came (timeout, connection error, refused URL). */
    response_status: z.number().int().nullable(),
    latency_ms: z.number().int(),
    /** The first 1 KB of the response body. */
    response_body: z.string(),
    error: z.string().nullable(),
    created_at: z.string(),
  })
  .meta({ id: 'WebhookAttempt' });

const DeliverySchema = z
  .object({
    id: z.string().meta({ example: 'whd_01JD3QB7ZK4V6M2N9P5T0XWYCD' }),
    endpoint_id: z.string(),
    /** The `webhook-id` header: the same on every attempt of this event. */
    event_id: z.string(),
    event_type: z.string(),
    job_id: z.string().nullable(),
    status: z.enum(['pending', 'sending', 'retrying', 'delivered', 'dead']),
    attempts: z.number().int(),
    next_attempt_at: z.string().nullable(),
    last_status_code: z.number().int().nullable(),
    last_error: z.string().nullable(),
    created_at: z.string(),
    delivered_at: z.string().nullable(),
    attempt_log: z.array(AttemptSchema),
  })
  .meta({ id: 'WebhookDelivery' });

const DeliveryListSchema = z
  .object({ data: z.array(DeliverySchema), next_cursor: z.string().nullable() })
  .meta({ id: 'WebhookDeliveryList' });

const PayloadSchema = z
  .object({
    type: z.string(),
    timestamp: z.string(),
    data: z.record(z.string(), z.unknown()),
  })
  .meta({ id: 'WebhookPayload' });

const EventSchema = z
  .object({
    id: z.string(),
    type: z.string(),
    job_id: z.string().nullable(),
    created_at: z.string(),
    payload: PayloadSchema,
  })
  .meta({ id: 'WebhookEvent' });

const EndpointParams = z.object({ id: z.string().min(1).max(100).meta({ example: 'whe_…' }) });
const DeliveryParams = z.object({ id: z.string().min(1).max(100).meta({ example: 'whd_…' }) });

// ---- row → response ---------------------------------------------------------------------------

function endpointView(row: WebhookEndpointRow) {
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    event_types: row.eventTypes,
    enabled: row.enabled,
    disabled_reason: row.disabledReason,
    disabled_at: iso(row.disabledAt),
    job_id: row.jobId,
    failing_since: iso(row.failingSince),
    previous_secret_expires_at:
      row.previousSecretExpiresAt && row.previousSecretExpiresAt > Date.now()
        ? iso(row.previousSecretExpiresAt)
        : null,
    created_at: iso(row.createdAt)!,
    updated_at: iso(row.updatedAt)!,
  };
}

function deliveryView(row: WebhookDeliveryRow, attempts: WebhookAttemptRow[]) {
  const final = row.status === 'delivered' || row.status === 'dead';
  return {
    id: row.id,
    endpoint_id: row.endpointId,
    event_id: row.eventId,
    event_type: row.eventType,
    job_id: row.jobId,
    status: row.status,
    attempts: row.attempts,
    next_attempt_at: final ? null : iso(row.nextAttemptAt),
    last_status_code: row.lastStatusCode,
    last_error: row.lastError,
    created_at: iso(row.createdAt)!,
    delivered_at: iso(row.deliveredAt),
    attempt_log: attempts
      .sort((a, b) => a.attempt - b.attempt)
      .map((a) => ({
        attempt: a.attempt,
        webhook_timestamp: a.timestamp,
        response_status: a.statusCode,
        latency_ms: a.latencyMs,
        response_body: a.responseBody,
        error: a.error,
        created_at: iso(a.createdAt)!,
      })),
  };
}

// ---- shared lookups ---------------------------------------------------------------------------

const dbOf = (env: WebhookEnv) => drizzle(env.DB);

async function ownEndpoint(env: WebhookEnv, accountId: string, id: string): Promise<WebhookEndpointRow> {
  const [row] = await dbOf(env)
    .select()
    .from(webhookEndpoints)
    .where(and(eq(webhookEndpoints.id, id), eq(webhookEndpoints.accountId, accountId)));
  if (!row) throw notFound(`webhook endpoint ${id}`);
  return row;
}

async function withAttempts(env: WebhookEnv, rows: WebhookDeliveryRow[]) {
  if (rows.length === 0) return [];
  const attempts = await dbOf(env)
    .select()
    .from(webhookAttempts)
    .where(
      inArray(
        webhookAttempts.deliveryId,
        rows.map((r) => r.id),
      ),
    );
  return rows.map((r) =>
    deliveryView(
      r,
      attempts.filter((a) => a.deliveryId === r.id),
    ),
  );
}

/** Refuses URLs this deployment may not call (SSRF rules), as a 400 naming the field. */
async function assertUrlAllowed(env: WebhookEnv, url: string): Promise<void> {
  const settings = webhookSettings(env);
  const checked = settings.resolver
    ? await checkEndpointTarget(url, settings.policy, settings.resolver)
    : checkEndpointUrl(url, settings.policy);
  if (!('url' in checked)) {
    throw new ApiError(400, checked.code, `url: ${checked.message}`, [
      { path: 'url', message: checked.message },
    ]);
  }
}

// ---- routes -----------------------------------------------------------------------------------

const tags = ['Webhooks'];

export const webhooks = router()
  .openapi(
    createRoute({
      method: 'post',
      path: '/endpoints',
      tags,
      security: bearerSecurity,
      summary: 'Register an endpoint; the response carries its signing secret, shown only once',
      request: { body: jsonBody(CreateEndpointSchema) },
      responses: { 201: json(EndpointWithSecretSchema, 'Created'), ...errors, ...conflictError },
    }),
    async (c) => {
      const { accountId } = userOf(c);
      const body = c.req.valid('json');
      await assertUrlAllowed(c.env, body.url);
      const d = dbOf(c.env);
      const existing = await d
        .select({ id: webhookEndpoints.id })
        .from(webhookEndpoints)
        .where(and(eq(webhookEndpoints.accountId, accountId), isNull(webhookEndpoints.jobId)));
      if (existing.length >= MAX_ENDPOINTS_PER_ACCOUNT) {
        throw new ApiError(
          409,
          'webhook_endpoint_limit',
          `an account has at most ${MAX_ENDPOINTS_PER_ACCOUNT} endpoints; delete one first`,
        );
      }
      const now = Date.now();
      const secret = newWebhookSecret();
      const [row] = await d
        .insert(webhookEndpoints)
        .values({
          id: newId('whe', now),
          accountId,
          url: body.url,
          description: body.description,
          eventTypes: [...new Set(body.event_types)],
          enabled: body.enabled,
          disabledReason: body.enabled ? null : 'manual',
          disabledAt: body.enabled ? null : now,
          secret,
          createdAt: now,
          updatedAt: now,
        })
        .returning();
      return c.json({ ...endpointView(row!), secret }, 201);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/endpoints',
      tags,
      security: bearerSecurity,
      summary: "List the account's endpoints (a job's own endpoint with ?job_id=)",
      request: { query: z.object({ job_id: z.string().max(100).optional() }) },
      responses: {
        200: json(z.object({ data: z.array(EndpointSchema) }), 'Endpoints, newest first'),
        ...errors,
      },
    }),
    async (c) => {
      const { accountId } = userOf(c);
      const { job_id } = c.req.valid('query');
      const rows = await dbOf(c.env)
        .select()
        .from(webhookEndpoints)
        .where(
          and(
            eq(webhookEndpoints.accountId, accountId),
            job_id ? eq(webhookEndpoints.jobId, job_id) : isNull(webhookEndpoints.jobId),
          ),
        )
        .orderBy(desc(webhookEndpoints.createdAt));
      return c.json({ data: rows.map(endpointView) }, 200);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/endpoints/{id}',
      tags,
      security: bearerSecurity,
      summary: 'Get an endpoint (without its secret)',
      request: { params: EndpointParams },
      responses: { 200: json(EndpointSchema, 'The endpoint'), ...errors },
    }),
    async (c) =>
      c.json(endpointView(await ownEndpoint(c.env, userOf(c).accountId, c.req.valid('param').id)), 200),
  )
  .openapi(
    createRoute({
      method: 'patch',
      path: '/endpoints/{id}',
      tags,
      security: bearerSecurity,
      summary: 'Change URL, description, event types, or enable/disable',
      request: { params: EndpointParams, body: jsonBody(UpdateEndpointSchema) },
      responses: { 200: json(EndpointSchema, 'The updated endpoint'), ...errors },
    }),
    async (c) => {
      const { accountId } = userOf(c);
      const endpoint = await ownEndpoint(c.env, accountId, c.req.valid('param').id);
      const body = c.req.valid('json');
      if (body.url !== undefined) await assertUrlAllowed(c.env, body.url);
      const now = Date.now();
      const enabling = body.enabled === true && !endpoint.enabled;
      const disabling = body.enabled === false && endpoint.enabled;
      const [row] = await dbOf(c.env)
        .update(webhookEndpoints)
        .set({
          ...(body.url !== undefined ? { url: body.url } : {}),
          ...(body.description !== undefined ? { description: body.description } : {}),
          ...(body.event_types !== undefined ? { eventTypes: [...new Set(body.event_types)] } : {}),
          ...(enabling ? { enabled: true, disabledReason: null, disabledAt: null, failingSince: null } : {}),
          ...(disabling ? { enabled: false, disabledReason: 'manual', disabledAt: now } : {}),
          updatedAt: now,
        })
        .where(eq(webhookEndpoints.id, endpoint.id))
        .returning();
      return c.json(endpointView(row!), 200);
    },
  )
  .openapi(
    createRoute({
      method: 'delete',
      path: '/endpoints/{id}',
      tags,
      security: bearerSecurity,
      summary: 'Delete an endpoint; deliveries still waiting for it end as dead',
      request: { params: EndpointParams },
      responses: { 204: { description: 'Deleted' }, ...errors },
    }),
    async (c) => {
      const endpoint = await ownEndpoint(c.env, userOf(c).accountId, c.req.valid('param').id);
      await dbOf(c.env).delete(webhookEndpoints).where(eq(webhookEndpoints.id, endpoint.id));
      return c.body(null, 204);
    },
  )
  .openapi(
    createRoute({
      method: 'post',
      path: '/endpoints/{id}/rotate-secret',
      tags,
      security: bearerSecurity,
      summary: 'New signing secret; the old one keeps signing (a second signature) for 24 h',
      request: { params: EndpointParams },
      responses: {
        200: json(EndpointWithSecretSchema, 'The endpoint and its new secret, shown only once'),
        ...errors,
        ...conflictError,
      },
    }),
    async (c) => {
      const endpoint = await ownEndpoint(c.env, userOf(c).accountId, c.req.valid('param').id);
      if (!endpoint.secret) {
        throw new ApiError(
          409,
          'job_endpoint_secret',
          "a job's endpoint signs with the account's job secret: POST /v1/webhooks/job-secret/rotate",
        );
      }
      const now = Date.now();
      const secret = newWebhookSecret();
      const [row] = await dbOf(c.env)
        .update(webhookEndpoints)
        .set({
          secret,
          previousSecret: endpoint.secret,
          previousSecretExpiresAt: now + SECRET_OVERLAP_MS,
          updatedAt: now,
        })
        .where(eq(webhookEndpoints.id, endpoint.id))
        .returning();
      return c.json({ ...endpointView(row!), secret }, 200);
    },
  )
  .openapi(
    createRoute({
      method: 'post',
      path: '/job-secret/rotate',
      tags,
      security: bearerSecurity,
      summary: "New secret for jobs' own endpoints (spec.webhook); the old one keeps signing for 24 h",
      responses: {
        200: json(
          z.object({ secret: z.string(), previous_secret_expires_at: z.string().nullable() }),
          'The new secret, shown only once',
        ),
        ...errors,
      },
    }),
    async (c) => {
      const { accountId } = userOf(c);
      const d = dbOf(c.env);
      const now = Date.now();
      const secret = newWebhookSecret();
      const [current] = await d
        .select()
        .from(webhookJobSecrets)
        .where(eq(webhookJobSecrets.accountId, accountId));
      const previous = current
        ? { previousSecret: current.secret, previousSecretExpiresAt: now + SECRET_OVERLAP_MS }
        : {};
      await d
        .insert(webhookJobSecrets)
        .values({ accountId, secret, updatedAt: now, ...previous })
        .onConflictDoUpdate({
          target: webhookJobSecrets.accountId,
          set: { secret, updatedAt: now, ...previous },
        });
      return c.json(
        { secret, previous_secret_expires_at: current ? iso(now + SECRET_OVERLAP_MS) : null },
        200,
      );
    },
  )
  .openapi(
    createRoute({
      method: 'post',
      path: '/endpoints/{id}/test',
      tags,
      security: bearerSecurity,
      summary: 'Send a webhook.test event to this endpoint',
      request: { params: EndpointParams },
      responses: { 202: json(DeliverySchema, 'Queued'), ...errors, ...conflictError },
    }),
    async (c) => {
      const { accountId } = userOf(c);
      const endpoint = await ownEndpoint(c.env, accountId, c.req.valid('param').id);
      if (!endpoint.enabled) {
        throw new ApiError(
          409,
          'webhook_endpoint_disabled',
          'the endpoint is disabled; PATCH {"enabled": true} first',
        );
      }
      const now = Date.now();
      const { deliveryIds } = await publishWebhookEvent(c.env, {
        accountId,
        eventId: newId('evt', now),
        jobId: null,
        endpointId: endpoint.id,
        payload: {
          type: 'webhook.test',
          timestamp: new Date(now).toISOString(),
          data: { endpoint_id: endpoint.id, message: 'This is a test event from cgrpo.' },
        },
      });
      const [row] = await dbOf(c.env)
        .select()
        .from(webhookDeliveries)
        .where(eq(webhookDeliveries.id, deliveryIds[0]!));
      return c.json((await withAttempts(c.env, [row!]))[0]!, 202);
    },
  )
  .openapi(
    createRoute({
      method: 'post',
      path: '/endpoints/{id}/recover',
      tags,
      security: bearerSecurity,
      summary: 'Re-send every dead delivery of this endpoint created in [since, until)',
      request: {
        params: EndpointParams,
        body: jsonBody(
          z.strictObject({
            since: z.iso.datetime({ offset: true }).meta({ example: '2026-11-21T00:00:00Z' }),
            until: z.iso.datetime({ offset: true }).optional().meta({ example: '2026-11-22T00:00:00Z' }),
          }),
        ),
      },
      responses: {
        202: json(z.object({ redelivering: z.number().int() }), 'Queued again'),
        ...errors,
        ...conflictError,
      },
    }),
    async (c) => {
      const endpoint = await ownEndpoint(c.env, userOf(c).accountId, c.req.valid('param').id);
      const body = c.req.valid('json');
      if (!endpoint.enabled) {
        throw new ApiError(
          409,
          'webhook_endpoint_disabled',
          'the endpoint is disabled; PATCH {"enabled": true} first',
        );
      }
      const since = Date.parse(body.since);
      const until = body.until ? Date.parse(body.until) : Date.now() + 1;
      if (until <= since)
        throw new ApiError(400, 'invalid_request', 'until must be after since', [
          { path: 'until', message: 'must be after since' },
        ]);
      return c.json({ redelivering: await recoverEndpoint(c.env, endpoint.id, since, until) }, 202);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/endpoints/{id}/deliveries',
      tags,
      security: bearerSecurity,
      summary: 'Delivery log of an endpoint, newest first, with every attempt',
      request: {
        params: EndpointParams,
        query: z.object({
          status: z.enum(['pending', 'sending', 'retrying', 'delivered', 'dead']).optional(),
          cursor: z.string().regex(/^\d+$/, 'a next_cursor from a previous page').optional(),
          limit: z.coerce.number().int().min(1).max(100).default(20),
        }),
      },
      responses: { 200: json(DeliveryListSchema, 'Deliveries'), ...errors },
    }),
    async (c) => {
      const endpoint = await ownEndpoint(c.env, userOf(c).accountId, c.req.valid('param').id);
      const { status, cursor, limit } = c.req.valid('query');
      const rows = await dbOf(c.env)
        .select()
        .from(webhookDeliveries)
        .where(
          and(
            eq(webhookDeliveries.endpointId, endpoint.id),
            status ? eq(webhookDeliveries.status, status) : undefined,
            cursor ? lt(webhookDeliveries.seq, Number(cursor)) : undefined,
          ),
        )
        .orderBy(desc(webhookDeliveries.seq))
        .limit(limit + 1);
      const page = rows.slice(0, limit);
      return c.json(
        {
          data: await withAttempts(c.env, page),
          next_cursor: rows.length > limit ? String(page.at(-1)!.seq) : null,
        },
        200,
      );
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/deliveries/{id}',
      tags,
      security: bearerSecurity,
      summary: 'One delivery with every attempt',
      request: { params: DeliveryParams },
      responses: { 200: json(DeliverySchema, 'The delivery'), ...errors },
    }),
    async (c) => {
      const { accountId } = userOf(c);
      const { id } = c.req.valid('param');
      const [row] = await dbOf(c.env)
        .select()
        .from(webhookDeliveries)
        .where(and(eq(webhookDeliveries.id, id), eq(webhookDeliveries.accountId, accountId)));
      if (!row) throw notFound(`webhook delivery ${id}`);
      return c.json((await withAttempts(c.env, [row]))[0]!, 200);
    },
  )
  .openapi(
    createRoute({
      method: 'post',
      path: '/deliveries/{id}/redeliver',
      tags,
      security: bearerSecurity,
      summary: 'Send a delivery again now (same webhook-id); a dead one gets a fresh set of attempts',
      request: { params: DeliveryParams },
      responses: { 202: json(DeliverySchema, 'Queued again'), ...errors, ...conflictError },
    }),
    async (c) => {
      const { accountId } = userOf(c);
      const { id } = c.req.valid('param');
      const [row] = await dbOf(c.env)
        .select()
        .from(webhookDeliveries)
        .where(and(eq(webhookDeliveries.id, id), eq(webhookDeliveries.accountId, accountId)));
      if (!row) throw notFound(`webhook delivery ${id}`);
      const result = await redeliver(c.env, row);
      if (!result.ok) throw new ApiError(409, result.code, result.message);
      return c.json((await withAttempts(c.env, [result.delivery]))[0]!, 202);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/events',
      tags,
      security: bearerSecurity,
      summary: "The account's webhook events (including webhook.endpoint.disabled), newest first",
      request: {
        query: z.object({
          type: z.string().max(100).optional(),
          limit: z.coerce.number().int().min(1).max(100).default(20),
        }),
      },
      responses: { 200: json(z.object({ data: z.array(EventSchema) }), 'Events'), ...errors },
    }),
    async (c) => {
      const { accountId } = userOf(c);
      const { type, limit } = c.req.valid('query');
      const rows = await dbOf(c.env)
        .select()
        .from(webhookEvents)
        .where(and(eq(webhookEvents.accountId, accountId), type ? eq(webhookEvents.type, type) : undefined))
        .orderBy(desc(webhookEvents.createdAt))
        .limit(limit);
      return c.json(
        {
          data: rows.map((r) => ({
            id: r.id,
            type: r.type,
            job_id: r.jobId,
            created_at: iso(r.createdAt)!,
            payload: JSON.parse(r.payload) as z.infer<typeof PayloadSchema>,
          })),
        },
        200,
      );
    },
  );

/**
 * Adds every event type to the OpenAPI document's `webhooks` section (OpenAPI 3.1) with an example
 * body and the three Standard Webhooks headers. Call it on the top-level app.
 */
export function registerWebhookEventDocs(registry: OpenAPIHono<AppEnv>['openAPIRegistry']): void {
  for (const [type, example] of Object.entries(PAYLOAD_EXAMPLES)) {
    registry.registerWebhook(
      createRoute({
        method: 'post',
        path: type,
        tags,
        summary: `${type} (signed per Standard Webhooks; verify with verifyWebhook from @cgrpo/client)`,
        request: {
          headers: z.object({
            'webhook-id': z.string().meta({
              description: 'Event id, identical on every retry: deduplicate on it',
              example: 'evt_01JD3QB7ZK4V6M2N9P5T0XWYCD',
            }),
            'webhook-timestamp': z
              .string()
              .meta({ description: 'Unix seconds of this attempt', example: '1795334400' }),
            'webhook-signature': z.string().meta({
              description: 'Space-separated v1,<base64 HMAC-SHA256 of id.timestamp.body>',
              example: 'v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=',
            }),
          }),
          body: { required: true, content: { 'application/json': { schema: PayloadSchema, example } } },
        },
        responses: { 200: { description: 'Any 2xx acknowledges the delivery; anything else is retried' } },
      }),
    );
  }
}
