import { API_KEY_PREFIX, API_KEY_SCOPES, type ApiKeyScope, RUNNER_TOKEN_PREFIX } from '@cgrpo/contract';
import { and, eq, isNull } from 'drizzle-orm';
import type { Context, MiddlewareHandler } from 'hono';
import { apiKeys, runners } from './db/schema';
import type { AppEnv, Db } from './env';
import { ApiError } from './errors';
import { sha256Hex } from './ids';

// Bearer-token auth. User routes take API keys (`cgrpo_sk_…`); /v1/runner/* takes runner tokens
// (`cgrpo_rt_…`). A valid token on the wrong kind of route is a 403, so a leaked runner token can
// never read or create jobs.

const LAST_USED_RESOLUTION_MS = 60_000;

function bearer(c: Context<AppEnv>): string {
  const header = c.req.header('authorization');
  if (!header) {
    throw new ApiError(401, 'unauthenticated', "missing 'Authorization: Bearer <key>' header");
  }
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match) throw new ApiError(401, 'unauthenticated', "the Authorization header must be 'Bearer <key>'");
  return match[1]!;
}

async function findUserKey(db: Db, token: string) {
  const hash = await sha256Hex(token);
  return db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.hash, hash), eq(apiKeys.kind, 'api'), isNull(apiKeys.revokedAt)))
    .get();
}

async function findRunner(db: Db, token: string) {
  const hash = await sha256Hex(token);
  return db
    .select()
    .from(runners)
    .where(and(eq(runners.tokenHash, hash), isNull(runners.revokedAt)))
    .get();
}

function invalidKey(): ApiError {
  return new ApiError(401, 'unauthenticated', 'the key is invalid or has been revoked; create a new one');
}

/**
 * The scope a user route needs, by route group (docs/api.md, "API keys"); null = any key.
 * A path outside every group needs `admin`, so a new route is closed to scoped keys until it is
 * given a group here.
 */
export function scopeNeeded(method: string, path: string): ApiKeyScope | null {
  const read = method === 'GET' || method === 'HEAD';
  const group = /^\/v1\/([\w-]+)/.exec(path)?.[1];
  switch (group) {
    case 'account':
      return null;
    case 'keys':
      return 'admin';
    case 'runner-keys':
    case 'runners':
      return 'runner';
    case 'jobs':
      return read || (method === 'POST' && path === '/v1/jobs/estimate') ? 'jobs:read' : 'jobs:write';
    case 'artifacts':
      return read ? 'datasets:read' : 'datasets:write';
    case 'plugins':
      return read ? 'plugins:read' : 'plugins:write';
    case 'webhooks':
      return read ? 'webhooks:read' : 'webhooks:write';
    default:
      return 'admin';
  }
}

/** Scopes of a stored key: null (a key made before scopes existed, or without `scopes`) is all. */
export const scopesOf = (stored: ApiKeyScope[] | null): ApiKeyScope[] => stored ?? [...API_KEY_SCOPES];

function requireScope(scopes: ApiKeyScope[], needed: ApiKeyScope | null): void {
  if (needed === null || scopes.includes(needed) || scopes.includes('admin')) return;
  throw new ApiError(
    403,
    'insufficient_scope',
    `this route needs the '${needed}' scope and the key has ${scopes.join(', ')}; use a key with '${needed}' (POST /v1/keys with "scopes")`,
    [{ path: 'scopes', message: `needs '${needed}'` }],
  );
}

/** Routes for users (API keys). */
export const requireUser: MiddlewareHandler<AppEnv> = async (c, next) => {
  const token = bearer(c);
  const db = c.get('db');
  if (token.startsWith(RUNNER_TOKEN_PREFIX)) {
    if (await findRunner(db, token)) {
      throw new ApiError(
        403,
        'forbidden',
        'runner tokens are valid only on /v1/runner/* routes; use an API key',
      );
    }
    throw invalidKey();
  }
  if (!token.startsWith(API_KEY_PREFIX)) throw invalidKey();
  const key = await findUserKey(db, token);
  if (!key) throw invalidKey();
  requireScope(scopesOf(key.scopes), scopeNeeded(c.req.method, c.req.path));
  c.set('principal', { type: 'user', accountId: key.accountId, keyId: key.id });
  const now = Date.now();
  if (!key.lastUsedAt || now - key.lastUsedAt > LAST_USED_RESOLUTION_MS) {
    c.executionCtx.waitUntil(db.update(apiKeys).set({ lastUsedAt: now }).where(eq(apiKeys.id, key.id)).run());
  }
  await next();
};

/** /v1/runner/* (runner tokens). */
export const requireRunner: MiddlewareHandler<AppEnv> = async (c, next) => {
  const token = bearer(c);
  const db = c.get('db');
  if (token.startsWith(API_KEY_PREFIX)) {
    if (await findUserKey(db, token)) {
      throw new ApiError(
        403,
        'forbidden',
        'this route needs a runner token (cgrpo_rt_…); register a runner first',
      );
    }
    throw invalidKey();
  }
  if (!token.startsWith(RUNNER_TOKEN_PREFIX)) throw invalidKey();
  const runner = await findRunner(db, token);
  if (!runner) throw invalidKey();
  c.set('principal', {
    type: 'runner',
    accountId: runner.accountId,
    runnerId: runner.id,
    labels: runner.labels,
    capabilities: runner.capabilities,
  });
  const now = Date.now();
  if (!runner.lastSeenAt || now - runner.lastSeenAt > LAST_USED_RESOLUTION_MS) {
    c.executionCtx.waitUntil(
      db.update(runners).set({ lastSeenAt: now }).where(eq(runners.id, runner.id)).run(),
    );
  }
  await next();
};

export function userOf(c: Context<AppEnv>): { accountId: string; keyId: string } {
  const p = c.get('principal');
  if (p.type !== 'user') throw new ApiError(403, 'forbidden', 'this route needs an API key');
  return p;
}

export function runnerOf(c: Context<AppEnv>) {
  const p = c.get('principal');
  if (p.type !== 'runner') throw new ApiError(403, 'forbidden', 'this route needs a runner token');
  return p;
}
