import type { DrizzleD1Database } from 'drizzle-orm/d1';
import type * as schema from './db/schema';

export interface Env {
  DB: D1Database;
  ARTIFACTS: R2Bucket;
  JOBS_QUEUE: Queue;
  ASSETS?: Fetcher;
  /** "development" enables local conveniences (see isProduction); anything else, staging included, is production. */
  ENVIRONMENT: string;
  /** Secret that authorises POST /v1/bootstrap outside development (`wrangler secret put BOOTSTRAP_TOKEN`). */
  BOOTSTRAP_TOKEN?: string;
  /** Overrides of the defaults in limits.ts (strings, as wrangler vars are). */
  MAX_UPLOAD_BYTES?: string;
  LEASE_SECONDS?: string;
  MAX_JOB_RETRIES?: string;
  /**
   * The deployment's price table (contract PriceTable as JSON, or a JSON object in `[vars]`): when
   * set and valid it prices every job's cost and key spend, and jobs' own `budgets.prices` are
   * ignored; an invalid value is logged and ignored (docs/budgets-and-alarms.md, "Deployment prices").
   */
  PRICE_TABLE?: string | object;
}

export type Db = DrizzleD1Database<typeof schema>;

/** Who a request acts for, set by the auth middleware. */
export type Principal =
  | { type: 'user'; accountId: string; keyId: string }
  | { type: 'runner'; accountId: string; runnerId: string; labels: string[]; capabilities: string[] };

export interface AppEnv {
  Bindings: Env;
  Variables: {
    requestId: string;
    db: Db;
    principal: Principal;
  };
}

/**
 * The one definition of production for every component (bootstrap, webhooks, SSRF rules): every
 * deployment that does not say ENVIRONMENT=development, so a staging or misspelt value is strict.
 */
export function isProduction(env: { ENVIRONMENT?: string }): boolean {
  return env.ENVIRONMENT !== 'development';
}
