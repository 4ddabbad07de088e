// The step-metrics digest (`job.metrics_digest`): every N steps, the main training metrics of the
// last N steps as latest/min/max/mean. Pure functions over stored metric points; the webhook
// plumbing is in job-events.ts.

/** The metrics a digest summarises, when the runner reported them in the window. */
export const DIGEST_METRICS = [
  'reward/mean',
  'pass@1/train',
  'eval/pass@1',
  'refinement/success_rate',
  'groups/zero_signal',
  'loss',
  'response_length/mean',
] as const;

/** Means to 6 decimals: enough for any metric here, and no 0.47000000000000003 in a payload. */
const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

export interface DigestPoint {
  attempt: number;
  step: number;
  values: Record<string, number | null>;
}

export interface MetricSummary {
  /** The value at the last step of the window that reported this metric. */
  latest: number;
  min: number;
  max: number;
  mean: number;
  /** Steps of the window that reported it (eval metrics only come on evaluation steps). */
  count: number;
}

export interface MetricsDigestData {
  every_steps: number;
  window: { from_step: number; to_step: number; steps_reported: number };
  metrics: Record<string, MetricSummary>;
}

/**
 * Windows are steps (k-1)·N+1 … k·N for k ≥ 1. Returns the last steps of the windows that a batch
 * spanning `minStep..maxStep` completes: a window is digested once its last step is reported.
 */
export function windowEndsIn(minStep: number, maxStep: number, everySteps: number): number[] {
  if (everySteps <= 0) return [];
  const ends: number[] = [];
  for (
    let end = Math.max(1, Math.ceil(minStep / everySteps)) * everySteps;
    end <= maxStep;
    end += everySteps
  ) {
    ends.push(end);
  }
  return ends;
}

/**
 * The digest of the window ending at `toStep`. A step stored by several attempts (a resumed job
 * recomputes the steps after its checkpoint) counts once, with the latest attempt's values.
 */
export function metricsDigest(
  points: readonly DigestPoint[],
  toStep: number,
  everySteps: number,
): MetricsDigestData {
  const fromStep = toStep - everySteps + 1;
  const byStep = new Map<number, DigestPoint>();
  for (const p of points) {
    if (p.step < fromStep || p.step > toStep) continue;
    const seen = byStep.get(p.step);
    if (!seen || p.attempt > seen.attempt) byStep.set(p.step, p);
  }
  const steps = [...byStep.values()].sort((a, b) => a.step - b.step);
  const metrics: Record<string, MetricSummary> = {};
  for (const name of DIGEST_METRICS) {
    const values = steps
      .map((p) => p.values[name])
      .filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
    if (values.length === 0) continue;
    metrics[name] = {
      latest: values[values.length - 1] as number,
      min: Math.min(...values),
      max: Math.max(...values),
      mean: round6(values.reduce((a, b) => a + b, 0) / values.length),
      count: values.length,
    };
  }
  return {
    every_steps: everySteps,
    window: { from_step: fromStep, to_step: toStep, steps_reported: steps.length },
    metrics,
  };
}
