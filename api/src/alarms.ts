import type { AlarmRule, Alarms } from '@cgrpo/contract';

// Health alarms as pure functions over a job's metric points (one point per step, sorted by step,
// the latest attempt's values where a step was reported twice). Each rule returns its evidence
// when it fires, or null. The thresholds and the reasons are in docs/budgets-and-alarms.md.

export interface StepValues {
  step: number;
  values: Record<string, number | null>;
}

export interface AlarmFiring {
  rule: AlarmRule;
  message: string;
  metric: string;
  window: { from_step: number; to_step: number };
  values: number[];
  threshold: number;
  action: 'event' | 'pause';
}

/** The last `n` steps that carry a number for `metric`, oldest first. */
function lastWith(
  points: readonly StepValues[],
  metric: string,
  n: number,
): { step: number; value: number }[] {
  const out: { step: number; value: number }[] = [];
  for (let i = points.length - 1; i >= 0 && out.length < n; i--) {
    const p = points[i]!;
    const v = p.values[metric];
    if (typeof v === 'number' && Number.isFinite(v)) out.push({ step: p.step, value: v });
  }
  return out.reverse();
}

const windowOf = (xs: { step: number }[]) => ({ from_step: xs[0]!.step, to_step: xs.at(-1)!.step });
const round = (x: number) => Math.round(x * 1e6) / 1e6;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Fraction of groups without signal per step: `groups/zero_signal` over the step's group count. */
export function zeroSignal(
  points: readonly StepValues[],
  a: Alarms,
  promptsPerStep: number,
): AlarmFiring | null {
  const rule = a.zero_signal;
  if (!rule.enabled) return null;
  const fractions: { step: number; value: number }[] = [];
  for (const p of lastWith(points, 'groups/zero_signal', rule.window)) {
    const kept = points.find((q) => q.step === p.step)?.values['dynamic_sampling/kept_groups'];
    const groups = typeof kept === 'number' && kept > 0 ? kept : promptsPerStep;
    fractions.push({ step: p.step, value: p.value / groups });
  }
  if (fractions.length < rule.window) return null;
  const mean = fractions.reduce((s, f) => s + f.value, 0) / fractions.length;
  if (mean < rule.max_fraction) return null;
  return {
    rule: 'zero_signal',
    message: `on average ${(mean * 100).toFixed(0)}% of groups had no signal (all rewards equal) over the last ${rule.window} steps (threshold ${(rule.max_fraction * 100).toFixed(0)}%)`,
    metric: 'groups/zero_signal',
    window: windowOf(fractions),
    values: fractions.map((f) => round(f.value)),
    threshold: rule.max_fraction,
    action: rule.action,
  };
}

/** Entropy below `min` (collapse) or above `max` (explosion) on every step of the window. */
export function entropy(points: readonly StepValues[], a: Alarms): AlarmFiring | null {
  const rule = a.entropy;
  if (!rule.enabled) return null;
  const xs = lastWith(points, 'entropy', rule.window);
  if (xs.length < rule.window) return null;
  const collapse = xs.every((x) => x.value < rule.min);
  const explosion = xs.every((x) => x.value > rule.max);
  if (!collapse && !explosion) return null;
  return {
    rule: 'entropy',
    message: collapse
      ? `entropy below ${rule.min} on each of the last ${rule.window} steps (collapse)`
      : `entropy above ${rule.max} on each of the last ${rule.window} steps (explosion)`,
    metric: 'entropy',
    window: windowOf(xs),
    values: xs.map((x) => round(x.value)),
    threshold: collapse ? rule.min : rule.max,
    action: rule.action,
  };
}

/** Mean response length grew by `max_growth`× or more from the window's first step to its last. */
export function responseLength(points: readonly StepValues[], a: Alarms): AlarmFiring | null {
  const rule = a.response_length;
  if (!rule.enabled) return null;
  const xs = lastWith(points, 'response_length/mean', rule.window);
  if (xs.length < rule.window) return null;
  const first = xs[0]!.value;
  const last = xs.at(-1)!.value;
  if (first <= 0 || last / first < rule.max_growth) return null;
  return {
    rule: 'response_length',
    message: `mean response length grew ${(last / first).toFixed(1)}× over the last ${rule.window} steps (threshold ${rule.max_growth}×)`,
    metric: 'response_length/mean',
    window: windowOf(xs),
    values: xs.map((x) => round(x.value)),
    threshold: rule.max_growth,
    action: rule.action,
  };
}

/** The latest KL above `max`, or above `spike_factor` × the median of the steps before it. */
export function klSpike(points: readonly StepValues[], a: Alarms): AlarmFiring | null {
  const rule = a.kl;
  if (!rule.enabled) return null;
  const xs = lastWith(points, 'kl', rule.window);
  if (xs.length === 0) return null;
  const last = xs.at(-1)!.value;
  const before = xs.slice(0, -1).map((x) => x.value);
  const base = before.length >= 2 ? median(before) : 0;
  const spike = base > 0 && last > rule.spike_factor * base;
  if (last <= rule.max && !spike) return null;
  return {
    rule: 'kl',
    message:
      last > rule.max
        ? `KL ${round(last)} above ${rule.max} at step ${xs.at(-1)!.step}`
        : `KL ${round(last)} is ${(last / base).toFixed(1)}× the median of the previous ${before.length} steps (threshold ${rule.spike_factor}×)`,
    metric: 'kl',
    window: windowOf(xs),
    values: xs.map((x) => round(x.value)),
    threshold: last > rule.max ? rule.max : rule.spike_factor,
    action: rule.action,
  };
}

/** Train reward rose while eval pass@1 fell, each by `min_delta` or more, over the last `window` evaluations. */
export function rewardHacking(points: readonly StepValues[], a: Alarms): AlarmFiring | null {
  const rule = a.reward_hacking;
  if (!rule.enabled) return null;
  const evals = lastWith(points, 'eval/pass@1', rule.window);
  if (evals.length < Math.max(2, rule.window)) return null;
  // train reward at (or just before) each evaluation step
  const rewardAt = (step: number) =>
    lastWith(
      points.filter((p) => p.step <= step),
      'reward/mean',
      1,
    )[0]?.value;
  const r0 = rewardAt(evals[0]!.step);
  const r1 = rewardAt(evals.at(-1)!.step);
  if (r0 === undefined || r1 === undefined) return null;
  const evalDrop = evals[0]!.value - evals.at(-1)!.value;
  const rewardRise = r1 - r0;
  if (evalDrop < rule.min_delta || rewardRise < rule.min_delta) return null;
  return {
    rule: 'reward_hacking',
    message: `train reward rose by ${round(rewardRise)} while eval pass@1 fell by ${round(evalDrop)} over the last ${evals.length} evaluations (possible reward hacking)`,
    metric: 'eval/pass@1',
    window: windowOf(evals),
    values: evals.map((x) => round(x.value)),
    threshold: rule.min_delta,
    action: rule.action,
  };
}

/** Every rule that fires on these points. */
export function evaluateAlarms(
  points: readonly StepValues[],
  alarms: Alarms,
  promptsPerStep: number,
): AlarmFiring[] {
  return [
    zeroSignal(points, alarms, promptsPerStep),
    entropy(points, alarms),
    responseLength(points, alarms),
    klSpike(points, alarms),
    rewardHacking(points, alarms),
  ].filter((f): f is AlarmFiring => f !== null);
}
