import {
  BUDGET_CAP_FIELD,
  BUDGET_KINDS,
  type BudgetKind,
  type Budgets,
  DEFAULT_ALARMS,
  type JobEstimate,
  type JobSpec,
  type PriceTable,
  PriceTableSchema,
} from '@cgrpo/contract';
import { type AlarmFiring, evaluateAlarms, type StepValues } from './alarms';
import type { JobRow } from './db/schema';
import type { Db, Env } from './env';
import { ApiError } from './errors';
import { recordJobEvent } from './events';
import { getAccountJob, jobRef, requestPause } from './lifecycle';

// Budgets (spend caps) and the health check that runs after every stored metrics batch: usage is
// summed from the job's metric points, a reached cap or an alarm set to `pause` requests a pause,
// and each firing is recorded once as `job.budget_reached` / `job.alarm` (event and webhook).

export interface Usage {
  generated_tokens: number;
  trained_tokens: number;
  runner_seconds: number;
  critic_tokens: number;
  cost_usd: number;
}

/** The prices that apply to one job: its runner's label entry over the top level, and its critic endpoint's LLM price. */
export interface JobPrices {
  runner_hour_usd: number;
  generated_mtok_usd: number;
  trained_mtok_usd: number;
  llm_mtok_usd: number;
}

export const ZERO_PRICES: PriceTable = { runner_hour_usd: 0, generated_mtok_usd: 0, trained_mtok_usd: 0 };

/** The deployment's price table (`PRICE_TABLE`): the table, or null with a warning when the setting is invalid. */
export interface DeploymentPrices {
  table: PriceTable | null;
  /** Why a set PRICE_TABLE is ignored; null when it is valid or not set. */
  warning: string | null;
}

const deploymentTables = new Map<string, DeploymentPrices>();

/**
 * The deployment's price table from the `PRICE_TABLE` setting (a JSON string, or a JSON object
 * in wrangler `[vars]`), validated with PriceTableSchema at its first use and cached per value. An
 * invalid setting never fails a request: it is logged once and treated as absent, and
 * `GET /v1/jobs/prices` shows the warning (docs/budgets-and-alarms.md, "Deployment prices").
 */
export function deploymentPrices(env: Pick<Env, 'PRICE_TABLE'>): DeploymentPrices {
  const raw = env.PRICE_TABLE;
  if (raw === undefined || raw === null || raw === '') return { table: null, warning: null };
  const key = typeof raw === 'string' ? raw : JSON.stringify(raw);
  let parsed = deploymentTables.get(key);
  if (!parsed) {
    parsed = parsePriceTable(raw);
    if (parsed.warning) console.warn(parsed.warning);
    if (deploymentTables.size > 20) deploymentTables.clear();
    deploymentTables.set(key, parsed);
  }
  return parsed;
}

function parsePriceTable(raw: string | object): DeploymentPrices {
  const ignored =
    'it is ignored, so cost metrics and key spend limits fall back to each job\'s own budgets.prices; fix the PRICE_TABLE setting (docs/budgets-and-alarms.md, "Deployment prices")';
  let value: unknown = raw;
  if (typeof raw === 'string') {
    try {
      value = JSON.parse(raw);
    } catch (error) {
      return { table: null, warning: `PRICE_TABLE is not JSON (${(error as Error).message}): ${ignored}` };
    }
  }
  const result = PriceTableSchema.safeParse(value);
  if (result.success) return { table: result.data, warning: null };
  const issues = result.error.issues
    .slice(0, 5)
    .map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`)
    .join('; ');
  return { table: null, warning: `PRICE_TABLE is not a valid price table (${issues}): ${ignored}` };
}

/**
 * The table that prices a job: the deployment's PRICE_TABLE when set (the job's own
 * `budgets.prices` is then ignored, for its cost, its `max_cost_usd` and its key's spend limit),
 * else the job's `budgets.prices`, else null (the job has no price: cost 0).
 */
export function priceTableFor(env: Pick<Env, 'PRICE_TABLE'>, spec: JobSpec): PriceTable | null {
  return deploymentPrices(env).table ?? spec.budgets?.prices ?? null;
}

/**
 * Picks a job's prices from the table (docs/budgets-and-alarms.md, "Prices"): the first of
 * `runnerLabels` with a `runners` entry overrides the top-level prices it names; the LLM price is
 * the critic endpoint's entry in `llm_mtok_usd`, else its `*` entry, else 0.
 */
export function jobPrices(
  table: PriceTable,
  runnerLabels: readonly string[],
  llmEndpoint: string | null,
): JobPrices {
  const label = runnerLabels.find((l) => table.runners?.[l] !== undefined);
  const byLabel = label === undefined ? {} : table.runners![label]!;
  const llm = table.llm_mtok_usd ?? {};
  return {
    runner_hour_usd: byLabel.runner_hour_usd ?? table.runner_hour_usd,
    generated_mtok_usd: byLabel.generated_mtok_usd ?? table.generated_mtok_usd,
    trained_mtok_usd: byLabel.trained_mtok_usd ?? table.trained_mtok_usd,
    llm_mtok_usd: (llmEndpoint !== null ? llm[llmEndpoint] : undefined) ?? llm['*'] ?? 0,
  };
}

/** The LLM endpoint a job's critic writes critiques with, or null for a critic without one. */
export function criticLlmEndpoint(spec: JobSpec): string | null {
  const critic = 'critic' in spec ? spec.critic : null;
  if (!critic) return null;
  if (critic.llm) return critic.llm.endpoint_url;
  const url = (critic.config as Record<string, unknown> | undefined)?.endpoint_url;
  return critic.plugin === 'builtin:llm' && typeof url === 'string' ? url : null;
}

export function costOf(u: Omit<Usage, 'cost_usd'>, prices: JobPrices): number {
  return (
    (u.runner_seconds / 3600) * prices.runner_hour_usd +
    (u.generated_tokens / 1e6) * prices.generated_mtok_usd +
    (u.trained_tokens / 1e6) * prices.trained_mtok_usd +
    (u.critic_tokens / 1e6) * prices.llm_mtok_usd
  );
}

/** Caps reached by this usage, in BUDGET_KINDS order. */
export function capsReached(
  usage: Usage,
  budgets: Budgets,
): { budget: BudgetKind; limit: number; used: number }[] {
  const out: { budget: BudgetKind; limit: number; used: number }[] = [];
  for (const kind of BUDGET_KINDS) {
    const limit = budgets[BUDGET_CAP_FIELD[kind]];
    if (limit !== null && usage[kind] >= limit) out.push({ budget: kind, limit, used: usage[kind] });
  }
  return out;
}

interface PointRow {
  attempt: number;
  step: number;
  values: string;
  created_at: number;
}

/**
 * Usage from stored points: tokens summed over every point of every attempt (a step redone after a
 * resume was paid for twice); runner seconds per attempt from its `job.started` event to its last point.
 */
export function usageOf(rows: readonly PointRow[], startedAt: Map<number, number>, prices: JobPrices): Usage {
  const series = costSeries(rows, startedAt, prices);
  return series.at(-1)?.usage ?? { ...NO_USAGE };
}

const NO_USAGE: Usage = {
  generated_tokens: 0,
  trained_tokens: 0,
  runner_seconds: 0,
  critic_tokens: 0,
  cost_usd: 0,
};

/**
 * Usage up to and including each point, in (attempt, step) order: what `budget/cost` says at that
 * step. Runner seconds at a point are the earlier attempts' whole time plus its own attempt's time
 * from `job.started` to the point.
 */
export function costSeries(
  rows: readonly PointRow[],
  startedAt: Map<number, number>,
  prices: JobPrices,
): { attempt: number; step: number; usage: Usage }[] {
  const ordered = [...rows].sort((a, b) => a.attempt - b.attempt || a.step - b.step);
  const lastAt = new Map<number, number>();
  for (const r of ordered) lastAt.set(r.attempt, Math.max(lastAt.get(r.attempt) ?? 0, r.created_at));
  const attemptSeconds = (attempt: number, until: number) => {
    const start = startedAt.get(attempt);
    return start !== undefined && until > start ? (until - start) / 1000 : 0;
  };
  let generated = 0;
  let trained = 0;
  let critic = 0;
  let earlierSeconds = 0;
  let attempt: number | null = null;
  const out: { attempt: number; step: number; usage: Usage }[] = [];
  for (const r of ordered) {
    if (attempt !== null && r.attempt !== attempt)
      earlierSeconds += attemptSeconds(attempt, lastAt.get(attempt)!);
    attempt = r.attempt;
    const v = JSON.parse(r.values) as Record<string, number | null>;
    generated += v['tokens/generated'] ?? 0;
    trained += v['tokens/trained'] ?? 0;
    critic += v['budget/critic_tokens'] ?? 0;
    const u = {
      generated_tokens: generated,
      trained_tokens: trained,
      runner_seconds: earlierSeconds + attemptSeconds(r.attempt, r.created_at),
      critic_tokens: critic,
    };
    out.push({ attempt: r.attempt, step: r.step, usage: { ...u, cost_usd: costOf(u, prices) } });
  }
  return out;
}

/** One point per step, the latest attempt's, sorted by step (what the alarms look at). */
export function latestPerStep(rows: readonly PointRow[]): StepValues[] {
  const byStep = new Map<number, PointRow>();
  for (const r of rows) {
    const seen = byStep.get(r.step);
    if (!seen || r.attempt > seen.attempt) byStep.set(r.step, r);
  }
  return [...byStep.values()]
    .sort((a, b) => a.step - b.step)
    .map((r) => ({ step: r.step, values: JSON.parse(r.values) as Record<string, number | null> }));
}

/**
 * Runs after a metrics batch is stored: records each newly reached cap and each newly firing
 * alarm once, and requests a pause when a cap is reached or a firing rule says `pause`.
 * Never throws: a failed check must not fail the runner's metrics report.
 */
export async function checkJobHealth(db: Db, env: Env, jobId: string): Promise<void> {
  try {
    const job = await env.DB.prepare('SELECT * FROM jobs WHERE id = ?1')
      .bind(jobId)
      .first<{ account_id: string }>();
    if (!job) return;
    const row = await getAccountJob(db, job.account_id, jobId);
    await checkRow(db, env, row);
  } catch (error) {
    console.error(`health check of job ${jobId} failed`, error);
  }
}

async function checkRow(db: Db, env: Env, row: JobRow): Promise<void> {
  const spec = JSON.parse(row.spec) as JobSpec;
  const [points, events] = await env.DB.batch([
    env.DB.prepare(
      'SELECT attempt, step, "values", created_at FROM metric_points WHERE job_id = ?1 ORDER BY step',
    ).bind(row.id),
    env.DB.prepare(
      `SELECT type, data, attempt, created_at FROM job_events WHERE job_id = ?1
       AND type IN ('job.started', 'job.budget_reached', 'job.alarm')`,
    ).bind(row.id),
  ]);
  const pointRows = (points?.results ?? []) as PointRow[];
  const eventRows = (events?.results ?? []) as {
    type: string;
    data: string;
    attempt: number;
    created_at: number;
  }[];
  const startedAt = new Map<number, number>();
  const fired = new Set<string>();
  for (const e of eventRows) {
    const data = JSON.parse(e.data) as Record<string, unknown>;
    if (e.type === 'job.started') startedAt.set(e.attempt, e.created_at);
    if (e.type === 'job.budget_reached') fired.add(`budget:${String(data.budget)}:${String(data.limit)}`);
    if (e.type === 'job.alarm') fired.add(`alarm:${String(data.rule)}:${e.attempt}`);
  }
  let pause = false;
  const ref = jobRef(row);
  const step = row.currentStep;
  const table = priceTableFor(env, spec);
  const prices = jobPrices(table ?? ZERO_PRICES, await runnerLabels(env, row), criticLlmEndpoint(spec));
  const series = costSeries(pointRows, startedAt, prices);
  // `budget/cost` on every point of a priced job, budgets block or not
  if (table) await storeCost(env, row.id, pointRows, series);
  const usage = series.at(-1)?.usage ?? { ...NO_USAGE };
  // a job cap fires once per cap value: the job's owner may raise it anyway, so resuming by hand is
  // the deliberate override
  for (const cap of spec.budgets ? capsReached(usage, spec.budgets) : []) {
    if (fired.has(`budget:${cap.budget}:${cap.limit}`)) continue;
    pause = true;
    await recordJobEvent(db, env, ref, 'job.budget_reached', {
      ...cap,
      reason: 'job_budget',
      step,
      action: 'pause',
      usage: roundUsage(usage),
      message: `${cap.budget} reached ${roundNumber(cap.used)} (cap ${cap.limit}); the job pauses — raise the cap with POST /v1/jobs/${row.id}/budgets and resume`,
    });
  }
  // every job counts to its key's spend. A key over its limit pauses its job at every report, not
  // once: the holder of a limited key can resume jobs but only an admin key can raise the limit
  const key = await keySpend(env, row.id, usage.cost_usd);
  const keyOver = key !== null && key.limit !== null && key.spent >= key.limit;
  if (keyOver) pause = true;
  if (keyOver && !fired.has(`budget:key_spend_limit:${key.limit}`)) {
    await recordJobEvent(db, env, ref, 'job.budget_reached', {
      budget: 'key_spend_limit',
      reason: 'key_spend_limit',
      key_id: key.id,
      limit: key.limit,
      used: Math.round(key.spent * 1e6) / 1e6,
      step,
      action: 'pause',
      usage: roundUsage(usage),
      message: `API key ${key.id} has spent $${roundNumber(key.spent)} of its $${key.limit} limit over its jobs; the job pauses — raise the limit with PATCH /v1/keys/${key.id} (admin scope) and resume the job`,
    });
  }
  const alarms = spec.alarms ?? DEFAULT_ALARMS;
  const firings: AlarmFiring[] =
    spec.algorithm === 'critique-grpo' || spec.algorithm === 'grpo'
      ? evaluateAlarms(latestPerStep(pointRows), alarms, spec.hyperparameters.prompts_per_step)
      : [];
  for (const firing of firings) {
    if (fired.has(`alarm:${firing.rule}:${row.attempt}`)) continue;
    if (firing.action === 'pause') pause = true;
    await recordJobEvent(db, env, ref, 'job.alarm', { ...firing });
  }
  if (pause && (row.status === 'running' || row.status === 'queued')) {
    await requestPause(db, env, row).catch(() => undefined);
  }
}

async function runnerLabels(env: Env, row: JobRow): Promise<string[]> {
  if (!row.runnerId) return [];
  const runner = await env.DB.prepare('SELECT labels FROM runners WHERE id = ?1')
    .bind(row.runnerId)
    .first<{ labels: string }>();
  return runner ? (JSON.parse(runner.labels) as string[]) : [];
}

/** Writes `budget/cost` (USD so far) into each point that lacks it, so the metrics routes show it. */
async function storeCost(
  env: Env,
  jobId: string,
  rows: readonly PointRow[],
  series: readonly { attempt: number; step: number; usage: Usage }[],
): Promise<void> {
  const missing = new Set(
    rows.filter((r) => !r.values.includes('"budget/cost"')).map((r) => `${r.attempt}:${r.step}`),
  );
  const updates = series
    .filter((p) => missing.has(`${p.attempt}:${p.step}`))
    .map((p) =>
      env.DB.prepare(
        `UPDATE metric_points SET "values" = json_set("values", '$."budget/cost"', ?1)
         WHERE job_id = ?2 AND attempt = ?3 AND step = ?4`,
      ).bind(Math.round(p.usage.cost_usd * 1e6) / 1e6, jobId, p.attempt, p.step),
    );
  if (updates.length > 0) await env.DB.batch(updates);
}

/**
 * Stores the job's live cost for the key that submitted it and returns that key's spend over all
 * its jobs, or null for a job no key is counted for (one submitted before keys had spend).
 */
async function keySpend(
  env: Env,
  jobId: string,
  costUsd: number,
): Promise<{ id: string; limit: number | null; spent: number } | null> {
  const [, spend] = await env.DB.batch([
    env.DB.prepare('UPDATE job_spend SET cost_usd = ?1, updated_at = ?2 WHERE job_id = ?3').bind(
      costUsd,
      Date.now(),
      jobId,
    ),
    env.DB.prepare(
      `SELECT k.id AS id, k.spend_limit_usd AS spend_limit, SUM(s.cost_usd) AS spent
       FROM job_spend s JOIN api_keys k ON k.id = s.api_key_id
       WHERE s.api_key_id = (SELECT api_key_id FROM job_spend WHERE job_id = ?1)
       GROUP BY k.id`,
    ).bind(jobId),
  ]);
  const r = spend?.results[0] as { id: string; spend_limit: number | null; spent: number } | undefined;
  return r ? { id: r.id, limit: r.spend_limit, spent: r.spent } : null;
}

/** USD a key's jobs have cost so far. */
export async function spentByKey(env: Env, keyId: string): Promise<number> {
  const r = await env.DB.prepare(
    'SELECT COALESCE(SUM(cost_usd), 0) AS spent FROM job_spend WHERE api_key_id = ?1',
  )
    .bind(keyId)
    .first<{ spent: number }>();
  return r?.spent ?? 0;
}

/**
 * Before a job is stored with a key that has a spend limit: refuses it (402) when its estimated
 * cost (runner class gpu-small, responses half full) plus the key's spend so far exceeds the limit.
 */
export async function admitJobForKey(env: Env, keyId: string, spec: JobSpec): Promise<void> {
  const key = await env.DB.prepare('SELECT spend_limit_usd FROM api_keys WHERE id = ?1')
    .bind(keyId)
    .first<{ spend_limit_usd: number | null }>();
  const limit = key?.spend_limit_usd;
  if (limit == null) return;
  const estimate = estimateJob(spec, 'gpu-small', 0.5, priceTableFor(env, spec));
  const spent = await spentByKey(env, keyId);
  if (spent + estimate.cost_usd > limit) {
    const round = (x: number) => Math.round(x * 1e6) / 1e6;
    throw new ApiError(
      402,
      'key_spend_limit_exceeded',
      `this job's estimated cost $${round(estimate.cost_usd)} plus the $${round(spent)} this key's jobs have cost exceeds the key's spend limit of $${limit}; lower the job's size (total_steps, prompts_per_step, max_response_tokens) or use a key with a higher limit`,
      [
        {
          path: deploymentPrices(env).table ? 'hyperparameters' : 'budgets.prices',
          message: `estimated $${round(estimate.cost_usd)}, $${round(limit - spent)} left on the key`,
        },
      ],
    );
  }
}

/** The statement that counts a new job to the key that submitted it (batched with the job's insert). */
export function countJobToKey(env: Env, jobId: string, keyId: string, now: number): D1PreparedStatement {
  return env.DB.prepare(
    'INSERT INTO job_spend (job_id, api_key_id, cost_usd, updated_at) VALUES (?1, ?2, 0, ?3) ON CONFLICT DO NOTHING',
  ).bind(jobId, keyId, now);
}

/**
 * Before a resume: a job whose submitting key has spent its limit would only pause again at its
 * next report, so the resume is refused (402) with what to do. Jobs no key is counted for pass.
 */
export async function assertKeyHasRoom(env: Env, jobId: string): Promise<void> {
  const key = await env.DB.prepare(
    `SELECT k.id AS id, k.spend_limit_usd AS spend_limit,
       (SELECT COALESCE(SUM(cost_usd), 0) FROM job_spend WHERE api_key_id = k.id) AS spent
     FROM job_spend s JOIN api_keys k ON k.id = s.api_key_id WHERE s.job_id = ?1`,
  )
    .bind(jobId)
    .first<{ id: string; spend_limit: number | null; spent: number }>();
  if (!key || key.spend_limit === null || key.spent < key.spend_limit) return;
  const round = (x: number) => Math.round(x * 1e6) / 1e6;
  throw new ApiError(
    402,
    'key_spend_limit_exceeded',
    `the key that submitted job ${jobId} (${key.id}) has spent $${round(key.spent)} of its $${key.spend_limit} limit, so the job would pause again at once; raise the limit with PATCH /v1/keys/${key.id} (an admin-scope key) and resume again`,
    [{ path: 'spend_limit_usd', message: `$${round(key.spent)} spent of $${key.spend_limit}` }],
  );
}

const roundNumber = (x: number) => Math.round(x * 1000) / 1000;
function roundUsage(u: Usage): Usage {
  return {
    generated_tokens: u.generated_tokens,
    trained_tokens: u.trained_tokens,
    runner_seconds: roundNumber(u.runner_seconds),
    critic_tokens: u.critic_tokens,
    cost_usd: Math.round(u.cost_usd * 1e6) / 1e6,
  };
}

/** Throughput assumed per runner class (tokens per second), for estimates only. */
export const RUNNER_CLASSES = {
  cpu: { generate_tps: 50, train_tps: 400 },
  'gpu-small': { generate_tps: 2_000, train_tps: 10_000 },
  'gpu-large': { generate_tps: 20_000, train_tps: 80_000 },
} as const;
export type RunnerClass = keyof typeof RUNNER_CLASSES;

/**
 * Expected usage of a spec (docs/budgets-and-alarms.md, "Estimates"): each sampled response is
 * assumed to fill `response_fill` of max_response_tokens; RL generates prompts × group_size
 * responses a step (plus one refinement per triggered group for critique-grpo, all groups
 * assumed triggered) and trains on all of them `epochs_per_step` times; SFT generates nothing
 * and trains on prompts_per_step completions a step. Cost is priced with `table` (callers pass
 * priceTableFor: the deployment's PRICE_TABLE, else the spec's own budgets.prices).
 */
export function estimateJob(
  spec: JobSpec,
  runnerClass: RunnerClass,
  responseFill = 0.5,
  table: PriceTable | null = spec.budgets?.prices ?? null,
): JobEstimate {
  const h = spec.hyperparameters;
  const responseTokens = h.max_response_tokens * responseFill;
  const steps = spec.algorithm === 'evaluate' ? 1 : h.total_steps;
  let generatedPerStep = 0;
  let trainedPerStep = 0;
  if (spec.algorithm === 'sft') {
    trainedPerStep = h.prompts_per_step * responseTokens;
  } else if (spec.algorithm === 'evaluate') {
    generatedPerStep = h.prompts_per_step * responseTokens;
  } else {
    const refinements = spec.algorithm === 'critique-grpo' ? h.refinements_per_group : 0;
    generatedPerStep = h.prompts_per_step * (h.group_size + refinements) * responseTokens;
    trainedPerStep = h.prompts_per_step * h.group_size * responseTokens * h.epochs_per_step;
  }
  // an LLM critic writes one critique per sampled response, assumed `response_fill` of max_critique_tokens
  const llmEndpoint = criticLlmEndpoint(spec);
  const criticPerStep =
    spec.algorithm === 'critique-grpo' && llmEndpoint !== null
      ? h.prompts_per_step * h.group_size * h.max_critique_tokens * responseFill
      : 0;
  const generated = Math.round(generatedPerStep * steps);
  const trained = Math.round(trainedPerStep * steps);
  const speed = RUNNER_CLASSES[runnerClass];
  const seconds = generated / speed.generate_tps + trained / speed.train_tps;
  const prices = jobPrices(table ?? ZERO_PRICES, spec.runner_labels, llmEndpoint);
  const u = {
    generated_tokens: generated,
    trained_tokens: trained,
    runner_seconds: Math.round(seconds),
    critic_tokens: Math.round(criticPerStep * steps),
  };
  return {
    steps,
    ...u,
    cost_usd: Math.round(costOf(u, prices) * 1e6) / 1e6,
    assumptions: {
      response_fill: responseFill,
      response_tokens: responseTokens,
      generate_tokens_per_second: speed.generate_tps,
      train_tokens_per_second: speed.train_tps,
    },
  };
}
