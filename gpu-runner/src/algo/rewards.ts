// Rewards, advantages, the refinement trigger and refinement selection (§1.2 steps 4, 8, 11; §2.1).
import type { AdvantageNorm, RefinementSelection, RefineTrigger } from './config';
import { type Rng, shuffledIndices } from './rng';

/** A verifier or critic value that could not be obtained (the plugin call failed or timed out). */
export interface Missing {
  missing: true;
  reason: string;
}

export type MaybeReward = number | Missing;

export function isMissing(value: unknown): value is Missing {
  return typeof value === 'object' && value !== null && (value as { missing?: unknown }).missing === true;
}

/**
 * One advantage per sequence of a group, computed over every member (initial and refinement):
 * `mean`: A_i = R_i − mean(R); `meanStd`: (R_i − mean(R)) / (std(R) + eps) with the unbiased std
 * (divides by |G| − 1; a one-member group has std 0). Equal rewards give A = 0 everywhere.
 */
export function groupAdvantages(rewards: readonly number[], norm: AdvantageNorm, eps = 1e-6): number[] {
  const n = rewards.length;
  if (n === 0) return [];
  for (const [i, r] of rewards.entries()) {
    if (!Number.isFinite(r))
      throw new RangeError(
        `reward ${i} is not a finite number (${r}); leave missing rewards out of the group`,
      );
  }
  const mean = rewards.reduce((s, r) => s + r, 0) / n;
  const centred = rewards.map((r) => r - mean);
  if (norm === 'mean') return centred;
  const variance = n > 1 ? centred.reduce((s, d) => s + d * d, 0) / (n - 1) : 0;
  const scale = Math.sqrt(variance) + eps;
  return centred.map((d) => d / scale);
}

/**
 * Whether a question's initial responses trigger critiques and refinements. A response counts as
 * correct when its reward is at least `correctThreshold` (binary verifiers: 1). Missing rewards are
 * ignored; a question with no verified response is never refined (there is nothing to critique).
 */
export function needsRefinement(
  rewards: readonly MaybeReward[],
  trigger: RefineTrigger,
  correctThreshold = 1,
): boolean {
  const present = rewards.filter((r): r is number => !isMissing(r));
  if (present.length === 0) return false;
  if (trigger === 'always') return true;
  return present.every((r) => r < correctThreshold);
}

/**
 * Which k refinements join the group. `preferCorrect` (paper): a seeded shuffle, then a stable sort
 * by reward, descending, so correct ones come first and ties are random. `random`: the shuffle
 * alone (the paper's ablation). `firstCorrect` (released code): the sort alone, in sample order.
 * Missing rewards are never chosen.
 */
export function selectRefinements(
  rewards: readonly MaybeReward[],
  k: number,
  rng: Rng,
  selection: RefinementSelection = 'preferCorrect',
): number[] {
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`k must be a non-negative integer, got ${k}`);
  const order =
    selection === 'firstCorrect' ? rewards.map((_, i) => i) : shuffledIndices(rewards.length, rng);
  const candidates = order.filter((i) => !isMissing(rewards[i]));
  // Array.prototype.sort is stable (ES2019), so ties keep the shuffled (or sample) order.
  if (selection !== 'random') candidates.sort((a, b) => (rewards[b] as number) - (rewards[a] as number));
  return candidates.slice(0, k);
}
