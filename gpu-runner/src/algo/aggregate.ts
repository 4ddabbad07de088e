// How per-token losses of a mini-batch become one number (§2.5). Every mode is linear in the token
// losses with one weight per sequence, so the runner feeds these weights to the training graph and
// the gradient of a token is weight × ∂ℓ/∂logp.
import type { LossAggregation } from './config';

export type SequenceKind = 'initial' | 'refinement';

export interface AggregationSequence {
  kind: SequenceKind;
  /** Which question (group) the sequence belongs to; used by `paperWeighted`. */
  question: number | string;
  /** Response tokens in the loss. */
  length: number;
}

/**
 * The weight each token of each sequence gets in the aggregate:
 * - sumOverMaxLen: 1 / (N · L_max) (N counts every sequence, zero-advantage ones included);
 * - tokenMean: 1 / Σ|s|;
 * - seqMeanTokenMean: 1 / (N · |s|);
 * - paperWeighted: per question 1/n on initial and 1/k on refinement tokens, then / (N_questions · L_max).
 */
export function aggregationWeights(
  seqs: readonly AggregationSequence[],
  mode: LossAggregation,
  lMax: number,
): number[] {
  const n = seqs.length;
  if (n === 0) return [];
  if (!(lMax > 0)) throw new RangeError(`lMax must be positive, got ${lMax}`);
  switch (mode) {
    case 'sumOverMaxLen':
      return seqs.map(() => 1 / (n * lMax));
    case 'tokenMean': {
      const tokens = seqs.reduce((s, q) => s + q.length, 0);
      return seqs.map(() => (tokens === 0 ? 0 : 1 / tokens));
    }
    case 'seqMeanTokenMean':
      return seqs.map((s) => (s.length === 0 ? 0 : 1 / (n * s.length)));
    case 'paperWeighted': {
      const counts = new Map<number | string, { initial: number; refinement: number }>();
      for (const s of seqs) {
        const c = counts.get(s.question) ?? { initial: 0, refinement: 0 };
        c[s.kind]++;
        counts.set(s.question, c);
      }
      const denominator = counts.size * lMax;
      return seqs.map(
        (s) =>
          1 / ((counts.get(s.question) as { initial: number; refinement: number })[s.kind] * denominator),
      );
    }
  }
}

/** Aggregates per-token losses (`tokenLosses[s][t]`) of the sequences `seqs` (lengths taken from tokenLosses). */
export function aggregate(
  tokenLosses: readonly (readonly number[])[],
  seqs: readonly Omit<AggregationSequence, 'length'>[],
  mode: LossAggregation,
  lMax: number,
): number {
  if (tokenLosses.length !== seqs.length) {
    throw new RangeError(`got ${tokenLosses.length} token-loss rows for ${seqs.length} sequences`);
  }
  const weights = aggregationWeights(
    seqs.map((s, i) => ({ ...s, length: tokenLosses[i].length })),
    mode,
    lMax,
  );
  let total = 0;
  for (const [i, row] of tokenLosses.entries()) {
    let sum = 0;
    for (const l of row) sum += l;
    total += weights[i] * sum;
  }
  return total;
}
