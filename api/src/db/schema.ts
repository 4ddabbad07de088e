// The control plane's tables (webhooks keep theirs in webhooks-schema.ts). Times are milliseconds
// since the epoch; JSON columns hold what is only ever read whole. Every row that belongs to a
// user carries account_id, and every query filters on it: another account's object is a 404.
import type { ApiKeyScope } from '@cgrpo/contract';
import { index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';

export const accounts = sqliteTable('accounts', {
  id: text('id').primaryKey(),
  /** The `<owner>` of the account's plugins (`acme/grader@1.0.0`). */
  handle: text('handle').notNull().unique(),
  name: text('name').notNull(),
  createdAt: integer('created_at').notNull(),
});

/** API keys (`cgrpo_sk_…`) and runner registration keys (`cgrpo_rk_…`), stored as SHA-256 hashes. */
export const apiKeys = sqliteTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    accountId: text('account_id').notNull(),
    kind: text('kind', { enum: ['api', 'registration'] }).notNull(),
    name: text('name').notNull(),
    prefix: text('prefix').notNull(),
    hash: text('hash').notNull().unique(),
    createdAt: integer('created_at').notNull(),
    lastUsedAt: integer('last_used_at'),
    revokedAt: integer('revoked_at'),
    /** API keys only: scopes (null = every scope, as keys made before scopes existed) and a USD limit on their jobs' cost. */
    scopes: text('scopes', { mode: 'json' }).$type<ApiKeyScope[]>(),
    spendLimitUsd: real('spend_limit_usd'),
  },
  (t) => [index('api_keys_account').on(t.accountId, t.kind, t.createdAt)],
);

export const runners = sqliteTable(
  'runners',
  {
    id: text('id').primaryKey(),
    accountId: text('account_id').notNull(),
    name: text('name').notNull(),
    labels: text('labels', { mode: 'json' }).$type<string[]>().notNull(),
    capabilities: text('capabilities', { mode: 'json' }).$type<string[]>().notNull(),
    version: text('version').notNull(),
    /** SHA-256 of the runner token (`cgrpo_rt_…`). */
    tokenHash: text('token_hash').notNull().unique(),
    createdAt: integer('created_at').notNull(),
    lastSeenAt: integer('last_seen_at'),
    revokedAt: integer('revoked_at'),
  },
  (t) => [index('runners_account').on(t.accountId, t.createdAt)],
);

export const jobs = sqliteTable(
  'jobs',
  {
    id: text('id').primaryKey(),
    accountId: text('account_id').notNull(),
    name: text('name').notNull(),
    status: text('status').notNull(),
    algorithm: text('algorithm').notNull(),
    /** The resolved JobSpec, immutable once written. */
    spec: text('spec').notNull(),
    /** JSON arrays copied out of the spec so the lease query can filter in SQL. */
    runnerLabels: text('runner_labels').notNull().default('[]'),
    requiredCapabilities: text('required_capabilities').notNull().default('[]'),
    attempt: integer('attempt').notNull().default(0),
    retries: integer('retries').notNull().default(0),
    cancelRequested: integer('cancel_requested', { mode: 'boolean' }).notNull().default(false),
    pauseRequested: integer('pause_requested', { mode: 'boolean' }).notNull().default(false),
    runnerId: text('runner_id'),
    leaseId: text('lease_id'),
    leaseExpiresAt: integer('lease_expires_at'),
    currentStep: integer('current_step'),
    totalSteps: integer('total_steps').notNull(),
    errorCode: text('error_code'),
    errorMessage: text('error_message'),
    idempotencyKey: text('idempotency_key'),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
    startedAt: integer('started_at'),
    finishedAt: integer('finished_at'),
  },
  (t) => [
    index('jobs_account_created').on(t.accountId, t.createdAt, t.id),
    index('jobs_status_created').on(t.status, t.createdAt),
    index('jobs_lease_expiry').on(t.status, t.leaseExpiresAt),
    uniqueIndex('jobs_idempotency').on(t.accountId, t.idempotencyKey),
  ],
);

export const jobEvents = sqliteTable(
  'job_events',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    jobId: text('job_id').notNull(),
    accountId: text('account_id').notNull(),
    type: text('type').notNull(),
    data: text('data').notNull().default('{}'),
    attempt: integer('attempt').notNull(),
    /** Runner-reported events carry their (attempt, seq); API-written lifecycle events have none. */
    seq: integer('seq'),
    createdAt: integer('created_at').notNull(),
  },
  (t) => [
    index('job_events_job').on(t.jobId, t.id),
    uniqueIndex('job_events_seq').on(t.jobId, t.attempt, t.seq),
  ],
);

/**
 * The API key that submitted each job and the job's live cost in USD (its latest `budget/cost`);
 * a key's spend is the sum over its jobs.
 */
export const jobSpend = sqliteTable(
  'job_spend',
  {
    jobId: text('job_id').primaryKey(),
    apiKeyId: text('api_key_id').notNull(),
    costUsd: real('cost_usd').notNull().default(0),
    updatedAt: integer('updated_at').notNull(),
  },
  (t) => [index('job_spend_key').on(t.apiKeyId)],
);

/** One row per (job, attempt, step) with every value of that step as a JSON object. */
export const metricPoints = sqliteTable(
  'metric_points',
  {
    jobId: text('job_id').notNull(),
    attempt: integer('attempt').notNull(),
    step: integer('step').notNull(),
    values: text('values').notNull(),
    createdAt: integer('created_at').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.jobId, t.attempt, t.step] }),
    index('metric_points_step').on(t.jobId, t.step),
  ],
);

export const checkpoints = sqliteTable(
  'checkpoints',
  {
    id: text('id').primaryKey(),
    jobId: text('job_id').notNull(),
    accountId: text('account_id').notNull(),
    attempt: integer('attempt').notNull(),
    step: integer('step').notNull(),
    kind: text('kind').notNull(),
    final: integer('final', { mode: 'boolean' }).notNull().default(false),
    status: text('status', { enum: ['uploading', 'complete'] }).notNull(),
    r2Key: text('r2_key').notNull(),
    uploadId: text('upload_id'),
    size: integer('size'),
    sha256: text('sha256'),
    metadata: text('metadata').notNull().default('{}'),
    createdAt: integer('created_at').notNull(),
  },
  (t) => [index('checkpoints_job').on(t.jobId, t.step)],
);

export const rollouts = sqliteTable(
  'rollouts',
  {
    jobId: text('job_id').notNull(),
    step: integer('step').notNull(),
    attempt: integer('attempt').notNull(),
    r2Key: text('r2_key').notNull(),
    size: integer('size').notNull(),
    createdAt: integer('created_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.step] })],
);

export const artifacts = sqliteTable(
  'artifacts',
  {
    id: text('id').primaryKey(),
    accountId: text('account_id').notNull(),
    name: text('name').notNull(),
    kind: text('kind', { enum: ['dataset', 'model', 'file'] }).notNull(),
    status: text('status', { enum: ['uploading', 'ready'] }).notNull(),
    r2Key: text('r2_key').notNull(),
    uploadId: text('upload_id'),
    size: integer('size'),
    sha256: text('sha256'),
    contentType: text('content_type').notNull(),
    rows: integer('rows'),
    fields: text('fields', { mode: 'json' }).$type<Record<string, string>>(),
    createdAt: integer('created_at').notNull(),
  },
  (t) => [index('artifacts_account').on(t.accountId, t.createdAt, t.id)],
);

/** Uploaded plugin versions; immutable once published (deprecation is the only change). */
export const plugins = sqliteTable(
  'plugins',
  {
    id: text('id').primaryKey(),
    accountId: text('account_id').notNull(),
    owner: text('owner').notNull(),
    name: text('name').notNull(),
    version: text('version').notNull(),
    /** Numeric parts for ordering versions without parsing in SQL. */
    major: integer('major').notNull(),
    minor: integer('minor').notNull(),
    patch: integer('patch').notNull(),
    prerelease: text('prerelease').notNull().default(''),
    kind: text('kind').notNull(),
    sha256: text('sha256').notNull(),
    size: integer('size').notNull(),
    manifest: text('manifest').notNull(),
    deprecated: integer('deprecated', { mode: 'boolean' }).notNull().default(false),
    deprecationMessage: text('deprecation_message'),
    createdAt: integer('created_at').notNull(),
  },
  (t) => [
    uniqueIndex('plugins_version').on(t.owner, t.name, t.version),
    index('plugins_sha').on(t.sha256),
    index('plugins_kind').on(t.kind, t.owner, t.name),
  ],
);

export type JobRow = typeof jobs.$inferSelect;
export type ArtifactRow = typeof artifacts.$inferSelect;
export type CheckpointRow = typeof checkpoints.$inferSelect;
export type PluginRow = typeof plugins.$inferSelect;
export type ApiKeyRow = typeof apiKeys.$inferSelect;
export type RunnerRow = typeof runners.$inferSelect;
