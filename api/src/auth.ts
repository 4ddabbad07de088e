import { API_KEY_PREFIX, RUNNER_TOKEN_PREFIX } from '@cgrpo/contract';
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
