// Webhook tables. Kept apart from schema.ts so webhooks own their storage; account_id and job_id
// are plain columns (no foreign keys) because endpoints outlive jobs and deliveries outlive endpoints'
// changes. Times are milliseconds since the epoch.
import { sql } from 'drizzle-orm';
import { index, integer, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';

export const webhookEndpoints = sqliteTable(
  'webhook_endpoints',
  {
    id: text('id').primaryKey(),
    accountId: text('account_id').notNull(),
    /** Set for the endpoint a job spec's `webhook` field creates: it receives only that job's events. */
    jobId: text('job_id'),
    url: text('url').notNull(),
    description: text('description').notNull().default(''),
    /** JSON array of event types; `job.*` matches every job event. */
    eventTypes: text('event_types', { mode: 'json' }).$type<string[]>().notNull(),
    enabled: integer('enabled', { mode: 'boolean' }).notNull().default(true),
    /** Why it was disabled: `manual`, `gone` (410), `failing` (5 days of failures). */
    disabledReason: text('disabled_reason'),
    disabledAt: integer('disabled_at'),
    /** Null for per-job endpoints: they sign with the account's job secret (webhook_job_secrets). */
    secret: text('secret'),
    previousSecret: text('previous_secret'),
    previousSecretExpiresAt: integer('previous_secret_expires_at'),
    /** First failure since the last success; null while healthy. */
    failingSince: integer('failing_since'),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
  },
  (t) => [
    index('webhook_endpoints_account').on(t.accountId, t.createdAt),
    // One per-job endpoint per job (NULLs, the account-wide endpoints, do not collide).
    uniqueIndex('webhook_endpoints_job').on(t.jobId),
  ],
);

/** The secret per-job endpoints sign with, one per account, rotated like an endpoint's. */
export const webhookJobSecrets = sqliteTable('webhook_job_secrets', {
  accountId: text('account_id').primaryKey(),
  secret: text('secret').notNull(),
  previousSecret: text('previous_secret'),
  previousSecretExpiresAt: integer('previous_secret_expires_at'),
  updatedAt: integer('updated_at').notNull(),
});

/** Every event sent to an account's endpoints, stored once with the exact body every attempt sends. */
export const webhookEvents = sqliteTable(
  'webhook_events',
  {
    /** The `webhook-id` header: receivers deduplicate on it. */
    id: text('id').primaryKey(),
    accountId: text('account_id').notNull(),
    type: text('type').notNull(),
    jobId: text('job_id'),
    payload: text('payload').notNull(),
    createdAt: integer('created_at').notNull(),
  },
  (t) => [index('webhook_events_account').on(t.accountId, t.createdAt)],
);

export const DELIVERY_STATUSES = ['pending', 'sending', 'retrying', 'delivered', 'dead'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export const webhookDeliveries = sqliteTable(
  'webhook_deliveries',
  {
    /** Fan-out order; per-job ordering compares it between deliveries of one endpoint and job. */
    seq: integer('seq').primaryKey({ autoIncrement: true }),
    id: text('id').notNull(),
    accountId: text('account_id').notNull(),
    endpointId: text('endpoint_id').notNull(),
    eventId: text('event_id').notNull(),
    eventType: text('event_type').notNull(),
    jobId: text('job_id'),
    status: text('status').$type<DeliveryStatus>().notNull(),
    /** Attempts ever made, and attempts in the current round (a redelivery starts a new round). */
    attempts: integer('attempts').notNull().default(0),
    roundAttempts: integer('round_attempts').notNull().default(0),
    nextAttemptAt: integer('next_attempt_at').notNull(),
    /** While `sending`: when a crashed consumer's claim may be taken over. */
    leaseUntil: integer('lease_until'),
    lastStatusCode: integer('last_status_code'),
    lastError: text('last_error'),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
    deliveredAt: integer('delivered_at'),
  },
  (t) => [
    uniqueIndex('webhook_deliveries_id').on(t.id),
    uniqueIndex('webhook_deliveries_endpoint_event').on(t.endpointId, t.eventId),
    index('webhook_deliveries_endpoint').on(t.endpointId, t.seq),
    index('webhook_deliveries_due').on(t.status, t.nextAttemptAt),
    index('webhook_deliveries_order').on(t.endpointId, t.jobId, t.status),
  ],
);

export const webhookAttempts = sqliteTable(
  'webhook_attempts',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    deliveryId: text('delivery_id').notNull(),
    attempt: integer('attempt').notNull(),
    /** The `webhook-timestamp` sent. */
    timestamp: integer('timestamp').notNull(),
    statusCode: integer('status_code'),
    latencyMs: integer('latency_ms').notNull(),
    /** First 1 KB of the response body. */
    responseBody: text('response_body').notNull().default(''),
    error: text('error'),
    createdAt: integer('created_at').notNull().default(sql`(unixepoch() * 1000)`),
  },
  (t) => [uniqueIndex('webhook_attempts_delivery_attempt').on(t.deliveryId, t.attempt)],
);

export type WebhookEndpointRow = typeof webhookEndpoints.$inferSelect;
export type WebhookDeliveryRow = typeof webhookDeliveries.$inferSelect;
export type WebhookAttemptRow = typeof webhookAttempts.$inferSelect;
