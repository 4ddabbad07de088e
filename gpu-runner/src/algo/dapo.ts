// DAPO's reward-side options for `grpo` (§3): overlong reward shaping and dynamic sampling.
import { isMissing, type MaybeReward } from './rewards';

/**
 * Soft overlong penalty added to the reward: 0 up to L_max − L_cache tokens, then falling linearly
 * to −1 at L_max, and −1 beyond.
 */
export function overlongPenalty(length: number, lMax: number, lCache: number): number {
  const start = lMax - lCache;
  if (length <= start) return 0;
  if (length <= lMax) return (start - length) / lCache;
  return -1;
}

/** A group carries gradient under DAPO only when its (present) rewards are not all equal. */
export function hasMixedRewards(rewards: readonly MaybeReward[]): boolean {
  const present = rewards.filter((r): r is number => !isMissing(r));
  return present.some((r) => r !== present[0]);
}

/** Indices of the groups dynamic sampling keeps (mixed rewards). */
export function dynamicSamplingFilter(groups: readonly (readonly MaybeReward[])[]): number[] {
  return groups.flatMap((rewards, i) => (hasMixedRewards(rewards) ? [i] : []));
}

export type DynamicSamplingDecision =
  | { action: 'train'; use: number }
  | { action: 'sample-more'; missing: number };

/**
 * After a sampling round (`extraRoundsDone` counts the rounds after the first): train on the first `target` kept groups when there are enough, sample
 * more prompts while rounds remain, and otherwise train on what was collected (the round cap keeps
 * a step from looping forever on a data set that is all solved or all unsolved).
 */
export function dynamicSamplingDecision(
  kept: number,
  target: number,
  extraRoundsDone: number,
  maxRounds: number,
): DynamicSamplingDecision {
  if (kept >= target) return { action: 'train', use: target };
  if (extraRoundsDone < maxRounds) return { action: 'sample-more', missing: target - kept };
  return { action: 'train', use: kept };
}
