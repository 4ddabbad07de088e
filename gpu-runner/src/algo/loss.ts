// The whole objective of one mini-batch on the CPU (§2): the reference the engine's training graph
// is tested against, and what the runner logs as loss components.

import { type AggregationSequence, aggregationWeights, type SequenceKind } from './aggregate';
import type { AlgoConfig } from './config';
import { entropyTerm, initialTokenLoss, k3Kl, refinementTokenLoss, type ShapingFunction } from './token-loss';

export interface LossSequence {
  kind: SequenceKind;
  question: number | string;
  advantage: number;
  /** Log-probs of the response tokens under the parameters being trained. */
  logp: readonly number[];
  /** Log-probs under π_old (initial responses only). */
  logpOld?: readonly number[];
  /** Log-probs under the reference model (only when klCoef > 0). */
  logpRef?: readonly number[];
  /** Entropy of each token's next-token distribution (only when entropyCoef > 0). */
  entropy?: readonly number[];
}

export interface LossBreakdown {
  /** L = L_pg (incl. β·KL per token) + L_H. */
  loss: number;
  policyLoss: number;
  entropyLoss: number;
  /** Mean k3 KL per token (0 when klCoef = 0). */
  meanKl: number;
  /** Per-token ℓ_t (policy-gradient term plus β·KL_t). */
  tokenLosses: number[][];
  /** ∂L/∂logp for every token (the entropy term's gradient flows through the logits, not logp). */
  dLossDLogp: number[][];
  /** Per-sequence aggregation weight. */
  weights: number[];
}

function requireRow(
  row: readonly number[] | undefined,
  length: number,
  what: string,
  s: number,
): readonly number[] {
  if (!row || row.length !== length) {
    throw new RangeError(
      `sequence ${s}: ${what} must have ${length} values, got ${row ? row.length : 'none'}`,
    );
  }
  return row;
}

export function computeLoss(
  seqs: readonly LossSequence[],
  config: AlgoConfig,
  shaping: ShapingFunction,
): LossBreakdown {
  const clip = config.clipInitial ? config.clip : null;
  const tokenLosses: number[][] = [];
  const grads: number[][] = [];
  let klSum = 0;
  let klCount = 0;
  seqs.forEach((seq, s) => {
    const losses: number[] = [];
    const dl: number[] = [];
    const old = seq.kind === 'initial' ? requireRow(seq.logpOld, seq.logp.length, 'logpOld', s) : null;
    const ref = config.klCoef > 0 ? requireRow(seq.logpRef, seq.logp.length, 'logpRef', s) : null;
    seq.logp.forEach((logp, t) => {
      const term = old
        ? initialTokenLoss(seq.advantage, logp, old[t], clip)
        : refinementTokenLoss(seq.advantage, logp, shaping);
      let loss = term.loss;
      let grad = term.dLossDLogp;
      if (ref) {
        const { kl, dKlDLogp } = k3Kl(logp, ref[t], config.klClamp);
        loss += config.klCoef * kl;
        grad += config.klCoef * dKlDLogp;
        klSum += kl;
        klCount++;
      }
      losses.push(loss);
      dl.push(grad);
    });
    tokenLosses.push(losses);
    grads.push(dl);
  });

  const aggSeqs: AggregationSequence[] = seqs.map((s) => ({
    kind: s.kind,
    question: s.question,
    length: s.logp.length,
  }));
  const weights = aggregationWeights(aggSeqs, config.lossAggregation, config.maxResponseLength);
  let policyLoss = 0;
  tokenLosses.forEach((row, s) => {
    for (const l of row) policyLoss += weights[s] * l;
  });
  const entropyLoss =
    config.entropyCoef > 0
      ? entropyTerm(
          seqs.map((seq, s) => requireRow(seq.entropy, seq.logp.length, 'entropy', s)),
          config.entropyCoef,
        )
      : 0;
  return {
    loss: policyLoss + entropyLoss,
    policyLoss,
    entropyLoss,
    meanKl: klCount === 0 ? 0 : klSum / klCount,
    tokenLosses,
    dLossDLogp: grads.map((row, s) => row.map((g) => g * weights[s])),
    weights,
  };
}
