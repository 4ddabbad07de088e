import { z } from 'zod';
import { bool, int, num } from './zod-helpers';

// Per-job spend caps and health alarms (docs/budgets-and-alarms.md). Both are enforced by the API
// from the metric points the runner reports: a cap reached or an alarm set to `pause` requests a
// pause (the runner checkpoints and stops), and each firing is a `job.budget_reached` or
// `job.alarm` event (and webhook).

/** Per-unit prices of one runner label; a field left out falls back to the table's top level. */
export const RunnerPricesSchema = z
  .strictObject({
    runner_hour_usd: num(0).optional(),
    generated_mtok_usd: num(0).optional(),
    trained_mtok_usd: num(0).optional(),
  })
  .meta({ id: 'RunnerPrices' });

/** Prices used to turn usage into money. Zero prices make cost 0 (and a money cap never fires). */
export const PriceTableSchema = z
  .strictObject({
    /** USD per hour of runner time (wall time from the lease to the latest metric point). */
    runner_hour_usd: num(0).default(0),
    /** USD per million generated (sampled) tokens. */
    generated_mtok_usd: num(0).default(0),
    /** USD per million trained tokens (tokens that got a gradient). */
    trained_mtok_usd: num(0).default(0),
    /**
     * Prices by runner label: the first label of the runner holding the job (in the runner's own
     * order) that has an entry here replaces the top-level prices it names.
     */
    runners: z.record(z.string().min(1).max(100), RunnerPricesSchema).optional(),
    /**
     * USD per million critic/LLM tokens (`budget/critic_tokens`) by the critic's LLM endpoint URL
     * (`critic.llm.endpoint_url`, or `config.endpoint_url` of builtin:llm); `*` prices any other.
     */
    llm_mtok_usd: z.record(z.string().min(1).max(2000), num(0)).optional(),
  })
  .meta({ id: 'PriceTable' });
export type PriceTable = z.infer<typeof PriceTableSchema>;

export const BUDGET_KINDS = [
  'generated_tokens',
  'trained_tokens',
  'runner_seconds',
  'critic_tokens',
  'cost_usd',
] as const;
export type BudgetKind = (typeof BUDGET_KINDS)[number];

export const BudgetsSchema = z
  .strictObject({
    /** Cap on the sum of `tokens/generated` over the job's steps; null = no cap. */
    max_generated_tokens: int(1).nullable().default(null),
    /** Cap on the sum of `tokens/trained`. */
    max_trained_tokens: int(1).nullable().default(null),
    /** Cap on runner wall time in seconds, summed over attempts. */
    max_runner_seconds: num(0, undefined, { exclusiveMin: true }).nullable().default(null),
    /** Cap on the sum of `budget/critic_tokens` (tokens of critiques written by LLM critics). */
    max_critic_tokens: int(1).nullable().default(null),
    /** Cap on cost in USD computed with `prices`. */
    max_cost_usd: num(0, undefined, { exclusiveMin: true }).nullable().default(null),
    prices: PriceTableSchema.default({ runner_hour_usd: 0, generated_mtok_usd: 0, trained_mtok_usd: 0 }),
  })
  .meta({ id: 'Budgets', description: 'Per-job caps; reaching one pauses the job.' });
export type Budgets = z.infer<typeof BudgetsSchema>;
export type BudgetsInput = z.input<typeof BudgetsSchema>;

/** The cap field of each budget kind. */
export const BUDGET_CAP_FIELD = {
  generated_tokens: 'max_generated_tokens',
  trained_tokens: 'max_trained_tokens',
  runner_seconds: 'max_runner_seconds',
  critic_tokens: 'max_critic_tokens',
  cost_usd: 'max_cost_usd',
} as const satisfies Record<BudgetKind, keyof Budgets>;

/**
 * What an API key may do, by route group (docs/api.md, "API keys"). `*:read` covers GET routes,
 * `*:write` the others; `runner` manages runners and runner registration keys; `admin` manages
 * API keys and implies every other scope. A key created without `scopes` gets all of them.
 */
export const API_KEY_SCOPES = [
  'jobs:read',
  'jobs:write',
  'datasets:read',
  'datasets:write',
  'plugins:read',
  'plugins:write',
  'webhooks:read',
  'webhooks:write',
  'runner',
  'admin',
] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];
export const ApiKeyScopeSchema = z.enum(API_KEY_SCOPES, {
  error: `must be one of ${API_KEY_SCOPES.join(', ')}`,
});

const action = () => z.enum(['event', 'pause'], { error: "must be 'event' or 'pause'" });

/** One alarm rule: whether it runs, over how many recent steps, and what a firing does. */
const rule = <T extends z.ZodRawShape>(shape: T, window: number, defaultAction: 'event' | 'pause') =>
  z.strictObject({
    enabled: bool().default(true),
    /** Steps the rule looks back over. */
    window: int(2, 1000).default(window),
    /** `event` records job.alarm; `pause` also requests a pause. */
    action: action().default(defaultAction),
    ...shape,
  });

export const AlarmsSchema = z
  .strictObject({
    /** Mean fraction of groups without signal (all rewards equal) over the window at or above this. */
    zero_signal: rule({ max_fraction: num(0, 1).default(0.9) }, 5, 'event').default({
      enabled: true,
      window: 5,
      action: 'event',
      max_fraction: 0.9,
    }),
    /** Entropy below `min` (collapse) or above `max` (explosion) on every step of the window. */
    entropy: rule({ min: num(0).default(0.01), max: num(0).default(10) }, 3, 'event').default({
      enabled: true,
      window: 3,
      action: 'event',
      min: 0.01,
      max: 10,
    }),
    /** Mean response length grew by this factor from the window's first to its last step. */
    response_length: rule({ max_growth: num(1).default(3) }, 10, 'event').default({
      enabled: true,
      window: 10,
      action: 'event',
      max_growth: 3,
    }),
    /** KL above `max`, or above `spike_factor` × the window's median before it. */
    kl: rule({ max: num(0).default(1), spike_factor: num(1).default(10) }, 10, 'event').default({
      enabled: true,
      window: 10,
      action: 'event',
      max: 1,
      spike_factor: 10,
    }),
    /** Train reward rose while eval pass@1 fell, each by at least `min_delta`, over the window's eval steps. */
    reward_hacking: rule({ min_delta: num(0).default(0.05) }, 3, 'event').default({
      enabled: true,
      window: 3,
      action: 'event',
      min_delta: 0.05,
    }),
  })
  .meta({ id: 'Alarms', description: 'Health alarms over the job metrics; on by default.' });
export type Alarms = z.infer<typeof AlarmsSchema>;
export type AlarmsInput = z.input<typeof AlarmsSchema>;
export type AlarmRule = keyof Alarms;
export const ALARM_RULES = [
  'zero_signal',
  'entropy',
  'response_length',
  'kl',
  'reward_hacking',
] as const satisfies readonly AlarmRule[];

/** Defaults for a job whose spec names no alarms. */
export const DEFAULT_ALARMS: Alarms = AlarmsSchema.parse({});
export const DEFAULT_BUDGETS: Budgets = BudgetsSchema.parse({});

/** POST /v1/jobs/estimate answer. */
export const JobEstimateSchema = z
  .object({
    steps: z.number().int(),
    generated_tokens: z.number(),
    trained_tokens: z.number(),
    runner_seconds: z.number(),
    /** Tokens of critiques an LLM critic writes (0 without one). */
    critic_tokens: z.number(),
    cost_usd: z.number(),
    /** The assumptions behind the numbers, so a caller can redo them. */
    assumptions: z.record(z.string(), z.number()),
  })
  .meta({ id: 'JobEstimate' });
export type JobEstimate = z.infer<typeof JobEstimateSchema>;
