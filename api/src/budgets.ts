import {
  BUDGET_CAP_FIELD,
  BUDGET_KINDS,
  type BudgetKind,
  type Budgets,
  DEFAULT_ALARMS,
  type JobEstimate,
  type JobSpec,
  type PriceTable,
} from '@cgrpo/contract';
import { type AlarmFiring, evaluateAlarms, type StepValues } from './alarms';
import type { JobRow } from './db/schema';
import type { Db, Env } from './env';
import { recordJobEvent } from './events';
import { getAccountJob, jobRef, requestPause } from './lifecycle';

// Budgets (spend caps) and the health check that runs after every stored metrics batch: usage is
// summed from the job's metric points, a reached cap or an alarm set to `pause` requests a pause,
// and each firing is recorded once as `job.budget_reached` / `job.alarm` (event and webhook).

export interface Usage {
  generated_tokens: number;
  trained_tokens: number;
  runner_seconds: number;
  cost_usd: number;
}

export function costOf(u: Omit<Usage, 'cost_usd'>, prices: PriceTable): number {
  return (
    (u.runner_seconds / 3600) * prices.runner_hour_usd +
    (u.generated_tokens / 1e6) * prices.generated_mtok_usd +
    (u.trained_tokens / 1e6) * prices.trained_mtok_usd
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
export function usageOf(
  rows: readonly PointRow[],
  startedAt: Map<number, number>,
  prices: PriceTable,
): Usage {
  let generated = 0;
  let trained = 0;
  const lastAt = new Map<number, number>();
  for (const r of rows) {
    const v = JSON.parse(r.values) as Record<string, number | null>;
    generated += v['tokens/generated'] ?? 0;
    trained += v['tokens/trained'] ?? 0;
    lastAt.set(r.attempt, Math.max(lastAt.get(r.attempt) ?? 0, r.created_at));
  }
  let seconds = 0;
  for (const [attempt, last] of lastAt) {
    const start = startedAt.get(attempt);
    if (start !== undefined && last > start) seconds += (last - start) / 1000;
  }
  const u = { generated_tokens: generated, trained_tokens: trained, runner_seconds: seconds };
  return { ...u, cost_usd: costOf(u, prices) };
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
  if (spec.budgets) {
    const usage = usageOf(pointRows, startedAt, spec.budgets.prices);
    const step = row.currentStep;
    for (const cap of capsReached(usage, spec.budgets)) {
      if (fired.has(`budget:${cap.budget}:${cap.limit}`)) continue;
      pause = true;
      await recordJobEvent(db, env, ref, 'job.budget_reached', {
        ...cap,
        step,
        action: 'pause',
        usage: roundUsage(usage),
        message: `${cap.budget} reached ${roundNumber(cap.used)} (cap ${cap.limit}); the job pauses — raise the cap with POST /v1/jobs/${row.id}/budgets and resume`,
      });
    }
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

const roundNumber = (x: number) => Math.round(x * 1000) / 1000;
function roundUsage(u: Usage): Usage {
  return {
    generated_tokens: u.generated_tokens,
    trained_tokens: u.trained_tokens,
    runner_seconds: roundNumber(u.runner_seconds),
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
 * and trains on prompts_per_step completions a step.
 */
export function estimateJob(spec: JobSpec, runnerClass: RunnerClass, responseFill = 0.5): JobEstimate {
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
  const generated = Math.round(generatedPerStep * steps);
  const trained = Math.round(trainedPerStep * steps);
  const speed = RUNNER_CLASSES[runnerClass];
  const seconds = generated / speed.generate_tps + trained / speed.train_tps;
  const prices = spec.budgets?.prices ?? { runner_hour_usd: 0, generated_mtok_usd: 0, trained_mtok_usd: 0 };
  const u = { generated_tokens: generated, trained_tokens: trained, runner_seconds: Math.round(seconds) };
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
