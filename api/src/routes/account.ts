import {
  AccountSchema,
  API_KEY_PREFIX,
  type ApiKey,
  ApiKeySchema,
  type ApiKeyScope,
  CreateApiKeySchema,
  CreatedApiKeySchema,
  CreatedRunnerKeySchema,
  CreateRunnerKeySchema,
  RUNNER_REGISTRATION_KEY_PREFIX,
  type RunnerKey,
  RunnerKeySchema,
  UpdateApiKeySchema,
} from '@cgrpo/contract';
import { createRoute } from '@hono/zod-openapi';
import { and, desc, eq, isNull } from 'drizzle-orm';
import { z } from 'zod';
import { scopesOf, userOf } from '../auth';
import { spentByKey } from '../budgets';
import { type ApiKeyRow, accounts, apiKeys, runners } from '../db/schema';
import type { Db, Env } from '../env';
import { ApiError, notFound } from '../errors';
import { iso, newId, newSecret, sha256Hex } from '../ids';
import { bearerSecurity, conflictError, errors, json, jsonBody, router } from '../openapi';

// The account, its API keys (`cgrpo_sk_…`), its runner registration keys (`cgrpo_rk_…`) and its
// registered runners. Secrets are returned once, at creation; only their SHA-256 is stored.

export const account = router();

function toRunnerKey(row: ApiKeyRow): RunnerKey {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    created_at: iso(row.createdAt)!,
    last_used_at: iso(row.lastUsedAt),
    revoked_at: iso(row.revokedAt),
  };
}

function toKey(row: ApiKeyRow, spentUsd: number): ApiKey {
  return {
    ...toRunnerKey(row),
    scopes: scopesOf(row.scopes),
    spend_limit_usd: row.spendLimitUsd,
    spent_usd: Math.round(spentUsd * 1e6) / 1e6,
  };
}

/** The key as its kind's routes return it (an API key with scopes and spend). */
async function keyOut(env: Env, row: ApiKeyRow): Promise<ApiKey | RunnerKey> {
  return row.kind === 'api' ? toKey(row, await spentByKey(env, row.id)) : toRunnerKey(row);
}

export interface KeyOptions {
  /** API keys: null = every scope. */
  scopes?: ApiKeyScope[] | null;
  spendLimitUsd?: number | null;
}

/** Creates a key of the given kind; the returned secret is never stored. */
export async function createKey(
  db: Db,
  accountId: string,
  kind: 'api' | 'registration',
  name: string,
  options: KeyOptions = {},
) {
  const secret = newSecret(kind === 'api' ? API_KEY_PREFIX : RUNNER_REGISTRATION_KEY_PREFIX);
  const row: ApiKeyRow = {
    id: newId(kind === 'api' ? 'key' : 'rk'),
    accountId,
    kind,
    name,
    prefix: secret.slice(0, 14),
    hash: await sha256Hex(secret),
    createdAt: Date.now(),
    lastUsedAt: null,
    revokedAt: null,
    scopes: kind === 'api' && options.scopes ? [...new Set(options.scopes)] : null,
    spendLimitUsd: kind === 'api' ? (options.spendLimitUsd ?? null) : null,
  };
  await db.insert(apiKeys).values(row).run();
  return kind === 'api' ? { ...toKey(row, 0), key: secret } : { ...toRunnerKey(row), key: secret };
}

const tags = ['account'];
const KeyIdParams = z.object({ id: z.string().min(1).max(100) });

account.openapi(
  createRoute({
    method: 'get',
    path: '/account',
    tags,
    summary: 'The account the key belongs to',
    security: bearerSecurity,
    responses: { 200: json(AccountSchema, 'The account'), ...errors },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const row = await c.get('db').select().from(accounts).where(eq(accounts.id, accountId)).get();
    if (!row) throw notFound('account');
    return c.json({ id: row.id, name: row.name, handle: row.handle, created_at: iso(row.createdAt)! }, 200);
  },
);

for (const kind of ['api', 'registration'] as const) {
  const base = kind === 'api' ? '/keys' : '/runner-keys';
  const what = kind === 'api' ? 'API key' : 'runner registration key';
  const listSchema = z.object({ data: z.array(kind === 'api' ? ApiKeySchema : RunnerKeySchema) });

  account.openapi(
    createRoute({
      method: 'post',
      path: base,
      tags,
      summary: `Create an ${what} (the secret is shown only in this response)`,
      security: bearerSecurity,
      request: { body: jsonBody(kind === 'api' ? CreateApiKeySchema : CreateRunnerKeySchema) },
      responses: {
        201: json(kind === 'api' ? CreatedApiKeySchema : CreatedRunnerKeySchema, `The new ${what}`),
        ...errors,
      },
    }),
    async (c) => {
      const { accountId } = userOf(c);
      const body = c.req.valid('json') as {
        name: string;
        scopes?: ApiKeyScope[];
        spend_limit_usd?: number | null;
      };
      const options = { scopes: body.scopes ?? null, spendLimitUsd: body.spend_limit_usd ?? null };
      return c.json(await createKey(c.get('db'), accountId, kind, body.name, options), 201);
    },
  );

  account.openapi(
    createRoute({
      method: 'get',
      path: base,
      tags,
      summary: `List ${what}s (without secrets)`,
      security: bearerSecurity,
      responses: { 200: json(listSchema, `The account's ${what}s, newest first`), ...errors },
    }),
    async (c) => {
      const { accountId } = userOf(c);
      const rows = await c
        .get('db')
        .select()
        .from(apiKeys)
        .where(and(eq(apiKeys.accountId, accountId), eq(apiKeys.kind, kind)))
        .orderBy(desc(apiKeys.createdAt))
        .all();
      return c.json({ data: await Promise.all(rows.map((r) => keyOut(c.env, r))) }, 200);
    },
  );

  account.openapi(
    createRoute({
      method: 'delete',
      path: `${base}/{id}`,
      tags,
      summary: `Revoke an ${what}`,
      security: bearerSecurity,
      request: { params: KeyIdParams },
      responses: {
        200: json(kind === 'api' ? ApiKeySchema : RunnerKeySchema, `The revoked ${what}`),
        ...errors,
      },
    }),
    async (c) => {
      const { accountId } = userOf(c);
      const { id } = c.req.valid('param');
      const db = c.get('db');
      const where = and(eq(apiKeys.id, id), eq(apiKeys.accountId, accountId), eq(apiKeys.kind, kind));
      await db
        .update(apiKeys)
        .set({ revokedAt: Date.now() })
        .where(and(where, isNull(apiKeys.revokedAt)))
        .run();
      const row = await db.select().from(apiKeys).where(where).get();
      if (!row) throw notFound(`${what} ${id}`);
      return c.json(await keyOut(c.env, row), 200);
    },
  );
}

account.openapi(
  createRoute({
    method: 'patch',
    path: '/keys/{id}',
    tags,
    summary: "Change an API key's spend limit (null removes it)",
    description:
      "Needs the `admin` scope. The new limit applies to the key's running jobs at their next metrics report: a job over it pauses with job.budget_reached (key_spend_limit); a job paused on the old limit can be resumed (POST /v1/jobs/{id}/resume) once the key has room.",
    security: bearerSecurity,
    request: { params: KeyIdParams, body: jsonBody(UpdateApiKeySchema) },
    responses: { 200: json(ApiKeySchema, 'The key with its new limit'), ...errors, ...conflictError },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const { id } = c.req.valid('param');
    const body = c.req.valid('json');
    const db = c.get('db');
    const where = and(eq(apiKeys.id, id), eq(apiKeys.accountId, accountId), eq(apiKeys.kind, 'api'));
    const row = await db.select().from(apiKeys).where(where).get();
    if (!row) throw notFound(`API key ${id}`);
    if (row.revokedAt !== null)
      throw new ApiError(
        409,
        'key_revoked',
        `API key ${id} is revoked; create a new key with POST /v1/keys`,
        [{ path: 'id', message: 'revoked' }],
      );
    await db.update(apiKeys).set({ spendLimitUsd: body.spend_limit_usd }).where(where).run();
    return c.json(toKey({ ...row, spendLimitUsd: body.spend_limit_usd }, await spentByKey(c.env, id)), 200);
  },
);

const RunnerSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    labels: z.array(z.string()),
    capabilities: z.array(z.string()),
    version: z.string(),
    created_at: z.string(),
    last_seen_at: z.string().nullable(),
    revoked_at: z.string().nullable(),
  })
  .meta({ id: 'Runner' });

function toRunner(row: typeof runners.$inferSelect): z.infer<typeof RunnerSchema> {
  return {
    id: row.id,
    name: row.name,
    labels: row.labels,
    capabilities: row.capabilities,
    version: row.version,
    created_at: iso(row.createdAt)!,
    last_seen_at: iso(row.lastSeenAt),
    revoked_at: iso(row.revokedAt),
  };
}

account.openapi(
  createRoute({
    method: 'get',
    path: '/runners',
    tags: ['runners'],
    summary: 'List the runners registered to this account',
    security: bearerSecurity,
    responses: { 200: json(z.object({ data: z.array(RunnerSchema) }), 'Registered runners'), ...errors },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const rows = await c
      .get('db')
      .select()
      .from(runners)
      .where(eq(runners.accountId, accountId))
      .orderBy(desc(runners.createdAt))
      .all();
    return c.json({ data: rows.map(toRunner) }, 200);
  },
);

account.openapi(
  createRoute({
    method: 'delete',
    path: '/runners/{id}',
    tags: ['runners'],
    summary: "Revoke a runner's token (its leases expire and their jobs are requeued)",
    security: bearerSecurity,
    request: { params: KeyIdParams },
    responses: { 200: json(RunnerSchema, 'The revoked runner'), ...errors },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const { id } = c.req.valid('param');
    const db = c.get('db');
    const where = and(eq(runners.id, id), eq(runners.accountId, accountId));
    await db
      .update(runners)
      .set({ revokedAt: Date.now() })
      .where(and(where, isNull(runners.revokedAt)))
      .run();
    const row = await db.select().from(runners).where(where).get();
    if (!row) throw notFound(`runner ${id}`);
    return c.json(toRunner(row), 200);
  },
);
