// Group assembly (§1.2 steps 4–9, 11): which samples of one question enter training, with which
// kind, reward and advantage. A refinement is trained as a response to the original prompt; the
// runner attaches token ids by (kind, index).

import type { SequenceKind } from './aggregate';
import type { AlgoConfig } from './config';
import { overlongPenalty } from './dapo';
import { groupAdvantages, isMissing, type MaybeReward, needsRefinement, selectRefinements } from './rewards';
import type { Rng } from './rng';

export interface GroupInput {
  /** Verifier rewards of the n initial responses; `{missing, reason}` where the verifier failed. */
  initialRewards: readonly MaybeReward[];
  /**
   * Verifier rewards of the refinements, one per initial response (same index), present exactly
   * when the question was triggered (`needsRefinement`). A refinement whose critique, generation
   * or verification failed is `{missing, reason}`.
   */
  refinementRewards?: readonly MaybeReward[];
  /** Response lengths in tokens; required when overlong shaping is on. */
  initialLengths?: readonly number[];
  refinementLengths?: readonly number[];
}

export interface GroupSequence {
  kind: SequenceKind;
  /** Index into initialRewards or refinementRewards. */
  index: number;
  /** The verifier score. */
  verifierReward: number;
  /** The reward the advantage is computed from (verifier score plus any overlong penalty). */
  reward: number;
  advantage: number;
}

export interface ExcludedSample {
  kind: SequenceKind;
  index: number;
  reason: string;
}

export interface AssembledGroup {
  /** Whether critiques and refinements were requested for this question. */
  triggered: boolean;
  /** Initial responses in sample order, then the admitted refinements. */
  sequences: GroupSequence[];
  /** Indices (into refinementRewards) of the admitted refinements. */
  admittedRefinements: number[];
  /** Samples left out of advantages and the loss because a plugin call failed. */
  excluded: ExcludedSample[];
  /** Every advantage is zero: the group adds no policy gradient (it still counts in normalisers). */
  zeroSignal: boolean;
}

export class GroupAssemblyError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'GroupAssemblyError';
  }
}

function shapedReward(
  reward: number,
  lengths: readonly number[] | undefined,
  index: number,
  kind: SequenceKind,
  config: AlgoConfig,
): number {
  if (config.overlongBuffer === null) return reward;
  const length = lengths?.[index];
  if (length === undefined) {
    throw new GroupAssemblyError(
      'missing_lengths',
      `overlong shaping needs the length of ${kind} response ${index}`,
    );
  }
  return (
    reward +
    config.overlongPenaltyFactor * overlongPenalty(length, config.maxResponseLength, config.overlongBuffer)
  );
}

/**
 * Assembles one question's training group. `rng` drives the choice among equally preferred
 * refinements; pass a stream derived from (job seed, step, question) for reproducible runs.
 */
export function assembleGroup(input: GroupInput, config: AlgoConfig, rng: Rng): AssembledGroup {
  const excluded: ExcludedSample[] = [];
  const members: Omit<GroupSequence, 'advantage'>[] = [];
  input.initialRewards.forEach((reward, index) => {
    if (isMissing(reward)) {
      excluded.push({ kind: 'initial', index, reason: reward.reason });
      return;
    }
    members.push({
      kind: 'initial',
      index,
      verifierReward: reward,
      reward: shapedReward(reward, input.initialLengths, index, 'initial', config),
    });
  });

  const triggered =
    config.algorithm === 'critique-grpo' &&
    config.refinementsPerGroup > 0 &&
    needsRefinement(input.initialRewards, config.refineTrigger);
  const refinements = input.refinementRewards;
  if (triggered && refinements === undefined) {
    throw new GroupAssemblyError(
      'refinements_expected',
      'the question was triggered but no refinement rewards were given',
    );
  }
  if (!triggered && refinements !== undefined) {
    throw new GroupAssemblyError(
      'refinements_unexpected',
      'refinement rewards were given for a question that was not triggered',
    );
  }

  let admitted: number[] = [];
  if (refinements) {
    refinements.forEach((reward, index) => {
      if (isMissing(reward)) excluded.push({ kind: 'refinement', index, reason: reward.reason });
    });
    admitted = selectRefinements(refinements, config.refinementsPerGroup, rng, config.refinementSelection);
    for (const index of admitted) {
      const reward = refinements[index] as number;
      members.push({
        kind: 'refinement',
        index,
        verifierReward: reward,
        reward: shapedReward(reward, input.refinementLengths, index, 'refinement', config),
      });
    }
  }

  const advantages = groupAdvantages(
    members.map((m) => m.reward),
    config.advantageNorm,
    config.advantageEps,
  );
  const sequences = members.map((m, i) => ({ ...m, advantage: advantages[i] }));
  return {
    triggered,
    sequences,
    admittedRefinements: admitted,
    excluded,
    zeroSignal: sequences.every((s) => s.advantage === 0),
  };
}

export interface TrainingSequence<T> extends GroupSequence {
  /** Which question (group) of the step the sequence belongs to. */
  question: number | string;
  /** The runner's payload for this sample (token ids, decoded text, …). */
  sample: T;
}

/**
 * The group's sequences with the runner's samples attached by (kind, index): what the mini-batch
 * split and the loss consume. Refinements carry their own tokens but are trained on the original
 * prompt (§1.2 step 9).
 */
export function trainingSequences<T>(
  group: AssembledGroup,
  question: number | string,
  initial: readonly T[],
  refinements: readonly T[] = [],
): TrainingSequence<T>[] {
  return group.sequences.map((s) => {
    const pool = s.kind === 'initial' ? initial : refinements;
    if (s.index >= pool.length) {
      throw new GroupAssemblyError(
        'missing_sample',
        `no ${s.kind} sample at index ${s.index} for question ${question}`,
      );
    }
    return { ...s, question, sample: pool[s.index] };
  });
}
