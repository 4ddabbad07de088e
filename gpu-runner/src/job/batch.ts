// The data side of a training step: which rows a step draws, the seeded streams it samples with,
// and the per-token loss inputs of a mini-batch. Pure functions of (seed, step, rows).
import type { SequenceKind } from '../algo/aggregate';
import { aggregationWeights } from '../algo/aggregate';
import type { AlgoConfig } from '../algo/config';
import { createRng, shuffledIndices } from '../algo/rng';
import type { Feed } from '../engine';
import { KL_INPUT, LOSS_INPUTS } from './loss-graph';
import { JobError } from './types';

/** One sequence that enters the loss. */
export interface TrainSequence {
  kind: SequenceKind;
  question: number;
  tokens: number[];
  /** Index of the first response token in `tokens`. */
  start: number;
  advantage: number;
  /** Index of the sample within its question (initial responses or refinements). */
  sample: number;
  logpOld?: Float32Array;
  /** Log-probs under the reference model (klCoef > 0). */
  logpRef?: Float32Array;
}

/** Seed for one named stream of one step, as a 31-bit integer (generation takes integers). */
export function streamSeed(seed: number, ...parts: (number | string)[]): number {
  return Math.floor(createRng(seed, ...parts).next() * 2 ** 31);
}

/** `count` distinct rows drawn from the training set (all of them when it is smaller). */
export function sampleRows(rows: number, count: number, rng: { next(): number }): number[] {
  return shuffledIndices(rows, rng).slice(0, Math.min(count, rows));
}

/** Which dataset rows step `step` (1-based) trains on: a seeded shuffle per epoch. */
export function batchRows(
  step: number,
  rows: number,
  perStep: number,
  seed: number,
  dropLast: boolean,
): { rows: number[]; epoch: number; batchInEpoch: number } {
  const perEpoch = dropLast ? Math.floor(rows / perStep) : Math.ceil(rows / perStep);
  if (perEpoch < 1) {
    throw new JobError(
      'dataset_too_small',
      `hyperparameters.prompts_per_step: ${perStep} is more than the ${rows} training rows (drop_last is on); lower it or add rows`,
    );
  }
  const epoch = Math.floor((step - 1) / perEpoch);
  const batchInEpoch = (step - 1) % perEpoch;
  const order = shuffledIndices(rows, createRng(seed, 'data', epoch));
  return { rows: order.slice(batchInEpoch * perStep, (batchInEpoch + 1) * perStep), epoch, batchInEpoch };
}

/** The questions [lo, hi) of mini-batch `b` of `m` over `questions` questions. */
export function miniBatchRange(b: number, m: number, questions: number): { lo: number; hi: number } {
  return { lo: Math.floor((b * questions) / m), hi: Math.floor(((b + 1) * questions) / m) };
}

/** The per-token inputs of the loss graph, laid out as the model packs sequences. */
export function lossFeeds(mb: readonly TrainSequence[], algo: AlgoConfig): Record<string, Feed> {
  const batch = mb.length;
  const seq = Math.max(...mb.map((s) => s.tokens.length)) - 1;
  const names = algo.klCoef > 0 ? [...LOSS_INPUTS, KL_INPUT] : LOSS_INPUTS;
  const arrays = Object.fromEntries(names.map((n) => [n, new Float32Array(batch * seq)])) as Record<
    (typeof LOSS_INPUTS)[number] | typeof KL_INPUT,
    Float32Array
  >;
  const weights = aggregationWeights(
    mb.map((s) => ({ kind: s.kind, question: s.question, length: s.tokens.length - s.start })),
    algo.lossAggregation,
    algo.maxResponseLength,
  );
  const responseTokens = mb.reduce((a, s) => a + s.tokens.length - s.start, 0);
  mb.forEach((s, b) => {
    for (let idx = s.start; idx < s.tokens.length; idx++) {
      const at = b * seq + idx - 1; // position idx−1 predicts token idx
      arrays.adv[at] = s.advantage;
      arrays.weight[at] = weights[b];
      arrays.is_initial[at] = s.kind === 'initial' ? 1 : 0;
      arrays.is_refinement[at] = s.kind === 'refinement' ? 1 : 0;
      arrays.logp_old[at] = s.logpOld ? s.logpOld[idx - s.start] : 0;
      arrays.ent_weight[at] = 1 / responseTokens;
      if (arrays.logp_ref && s.logpRef) arrays.logp_ref[at] = s.logpRef[idx - s.start];
    }
  });
  return Object.fromEntries(Object.entries(arrays).map(([k, data]) => [k, { dims: [batch, seq], data }]));
}
