// Every test vector of docs/critique-grpo.md §7 (computed there with python3, γ = 0.1), six digits.
import { describe, expect, it } from 'vitest';
import { aggregate, aggregationWeights } from './aggregate';
import { resolveAlgoConfig } from './config';
import { overlongPenalty } from './dapo';
import { computeLoss, type LossSequence } from './loss';
import { groupAdvantages, needsRefinement, selectRefinements } from './rewards';
import { createRng } from './rng';
import { shapingFunction } from './shaping';
import { entropyTerm, initialTokenLoss, k3Kl, ratioShaping, refinementTokenLoss } from './token-loss';

const close = (actual: readonly number[], expected: readonly number[], digits = 6) => {
  expect(actual).toHaveLength(expected.length);
  for (const [i, a] of actual.entries()) expect(a).toBeCloseTo(expected[i], digits);
};

describe('TV1 — advantages over the mixed group', () => {
  it.each([
    [
      [1, 0, 0, 0, 1],
      [0.6, -0.4, -0.4, -0.4, 0.6],
      [1.095443, -0.730295, -0.730295, -0.730295, 1.095443],
    ],
    [
      [0, 0, 0, 0, 1],
      [-0.2, -0.2, -0.2, -0.2, 0.8],
      [-0.447213, -0.447213, -0.447213, -0.447213, 1.78885],
    ],
    [
      [1, 0, 0, 0, 0],
      [0.8, -0.2, -0.2, -0.2, -0.2],
      [1.78885, -0.447213, -0.447213, -0.447213, -0.447213],
    ],
    [
      [0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0],
    ],
    [
      [1, 1, 1, 1, 1],
      [0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0],
    ],
  ])('%j', (rewards, mean, meanStd) => {
    close(groupAdvantages(rewards, 'mean'), mean);
    // the doc's numbers are truncated to 6 digits, so compare to 5
    close(groupAdvantages(rewards, 'meanStd'), meanStd, 5);
  });
});

describe('TV2 — shaping f(p) = p/(p+γ) and refinement tokens', () => {
  const closed = ratioShaping(0.1);
  const parsed = shapingFunction({ expression: 'p / (p + gamma)', params: { gamma: 0.1 } });
  it.each([
    [0.01, 0.090909, 0.082645],
    [0.05, 0.333333, 0.222222],
    [0.1, 0.5, 0.25],
    [0.5, 0.833333, 0.138889],
    [0.9, 0.9, 0.09],
    [1.0, 0.909091, 0.082645],
  ])('p=%f → f=%f, Ψ=%f (closed form and parsed expression)', (p, f, psi) => {
    for (const shaping of [closed, parsed]) {
      expect(shaping(p).f).toBeCloseTo(f, 6);
      expect(shaping(p).dfDLogp).toBeCloseTo(psi, 6);
    }
  });
  it.each([
    [0.8, 0.05, -0.266667, -0.177778],
    [0.8, 0.1, -0.4, -0.2],
    [0.8, 0.5, -0.666667, -0.111111],
    [0.8, 0.9, -0.72, -0.072],
    [-0.2, 0.05, 0.066667, 0.044444],
    [-0.2, 0.1, 0.1, 0.05],
    [-0.2, 0.5, 0.166667, 0.027778],
    [-0.2, 0.9, 0.18, 0.018],
  ])('A=%f p=%f → loss %f, ∂/∂logp %f', (A, p, loss, grad) => {
    const term = refinementTokenLoss(A, Math.log(p), parsed);
    expect(term.loss).toBeCloseTo(loss, 6);
    expect(term.dLossDLogp).toBeCloseTo(grad, 6);
  });
});

describe('TV3 — initial tokens (p_old = 0.5)', () => {
  const none = null;
  const sym = { epsLow: 0.2, epsHigh: 0.2, dualClip: null };
  const higher = { epsLow: 0.2, epsHigh: 0.28, dualClip: null };
  it.each([
    [0.6, 0.55, [-0.66, -0.66], [-0.66, -0.66], [-0.66, -0.66]],
    [0.6, 0.65, [-0.78, -0.78], [-0.72, 0], [-0.768, 0]],
    [-0.4, 0.65, [0.52, 0.52], [0.52, 0.52], [0.52, 0.52]],
    [-0.4, 0.35, [0.28, 0.28], [0.32, 0], [0.32, 0]],
    [0.6, 0.35, [-0.42, -0.42], [-0.42, -0.42], [-0.42, -0.42]],
  ])('A=%f p_new=%f', (A, p, noClip, clipSym, clipHigher) => {
    for (const [clip, [loss, grad]] of [
      [none, noClip],
      [sym, clipSym],
      [higher, clipHigher],
    ] as const) {
      const term = initialTokenLoss(A, Math.log(p), Math.log(0.5), clip);
      expect(term.loss).toBeCloseTo(loss, 6);
      expect(term.dLossDLogp).toBeCloseTo(grad, 6);
    }
  });
});

describe('TV4 — one mixed group end to end (n=3, k=1, L_max=4, no clip, mean)', () => {
  const A = groupAdvantages([0, 1, 0, 1], 'mean');
  const ln = (ps: number[]) => ps.map(Math.log);
  const seqs: LossSequence[] = (
    [
      {
        kind: 'initial',
        question: 0,
        advantage: A[0],
        logp: ln([0.5, 0.2, 0.9]),
        logpOld: ln([0.5, 0.25, 0.9]),
      },
      { kind: 'initial', question: 0, advantage: A[1], logp: ln([0.6, 0.3]), logpOld: ln([0.5, 0.3]) },
      {
        kind: 'initial',
        question: 0,
        advantage: A[2],
        logp: ln([0.4, 0.4, 0.4, 0.4]),
        logpOld: ln([0.4, 0.4, 0.4, 0.4]),
      },
      { kind: 'refinement', question: 0, advantage: A[3], logp: ln([0.05, 0.5]) },
    ] as LossSequence[]
  ).map((s) => ({ ...s, entropy: s.logp.map(() => 1) }));
  const config = (lossAggregation: 'sumOverMaxLen' | 'tokenMean' | 'seqMeanTokenMean' | 'paperWeighted') =>
    resolveAlgoConfig('critique-grpo', { maxResponseLength: 4, lossAggregation, entropyCoef: 0.001 });
  const shaping = ratioShaping(0.1);

  it('advantages', () => close(A, [-0.5, 0.5, -0.5, 0.5]));

  it('token losses and refinement gradients', () => {
    const result = computeLoss(seqs, config('sumOverMaxLen'), shaping);
    close(result.tokenLosses[0], [0.5, 0.4, 0.5]);
    close(result.tokenLosses[1], [-0.6, -0.5]);
    close(result.tokenLosses[2], [0.5, 0.5, 0.5, 0.5]);
    close(result.tokenLosses[3], [-0.166667, -0.416667]);
    const sums = result.tokenLosses.map((row) => row.reduce((a, b) => a + b, 0));
    close(sums, [1.4, -1.1, 2.0, -0.583333]);
    close(
      seqs[3].logp.map((l) => refinementTokenLoss(A[3], l, shaping).dLossDLogp),
      [-0.111111, -0.069444],
    );
  });

  it.each([
    ['sumOverMaxLen', 0.107292],
    ['tokenMean', 0.156061],
    ['seqMeanTokenMean', 0.03125],
    ['paperWeighted', 0.045833],
  ] as const)('aggregate %s = %f', (mode, expected) => {
    const result = computeLoss(seqs, config(mode), shaping);
    expect(result.policyLoss).toBeCloseTo(expected, 6);
    expect(aggregate(result.tokenLosses, seqs, mode, 4)).toBeCloseTo(expected, 6);
  });

  it('paperWeighted before dividing by N_questions·L_max is 0.183333', () => {
    const w = aggregationWeights(
      seqs.map((s) => ({ ...s, length: s.logp.length })),
      'paperWeighted',
      4,
    );
    expect(w.map((x) => x * 4)).toEqual([1 / 3, 1 / 3, 1 / 3, 1]);
    const result = computeLoss(seqs, config('paperWeighted'), shaping);
    expect(result.policyLoss * 4).toBeCloseTo(0.183333, 6);
  });

  it('gradients of sumOverMaxLen and the entropy term', () => {
    const result = computeLoss(seqs, config('sumOverMaxLen'), shaping);
    expect(result.dLossDLogp[0][1]).toBeCloseTo(0.025, 6);
    expect(result.dLossDLogp[3][0]).toBeCloseTo(-0.006944, 6);
    expect(result.entropyLoss).toBeCloseTo(-0.001, 9);
    expect(
      entropyTerm(
        seqs.map((s) => s.entropy ?? []),
        0.001,
      ),
    ).toBeCloseTo(-0.001, 9);
    expect(result.loss).toBeCloseTo(0.107292 - 0.001, 6);
  });
});

describe('TV5 — GRPO baseline', () => {
  const A = groupAdvantages([1, 0, 0, 1], 'meanStd');
  it('meanStd advantages', () => close(A, [0.866024, -0.866024, -0.866024, 0.866024], 5));

  it('clipped token losses', () => {
    const logpOld = Math.log(0.4);
    const at = (r: number) => logpOld + Math.log(r);
    const sym = { epsLow: 0.2, epsHigh: 0.2, dualClip: null };
    const higher = { epsLow: 0.2, epsHigh: 0.28, dualClip: null };
    const a = initialTokenLoss(A[0], at(1.25), logpOld, sym);
    expect(a.loss).toBeCloseTo(-1.039229, 5);
    expect(a.dLossDLogp).toBe(0);
    const b = initialTokenLoss(A[0], at(1.25), logpOld, higher);
    expect(b.loss).toBeCloseTo(-1.08253, 5);
    expect(b.dLossDLogp).toBeCloseTo(-1.08253, 5);
    const c = initialTokenLoss(A[0], at(0.9), logpOld, sym);
    expect(c.loss).toBeCloseTo(-0.779422, 5);
    expect(c.dLossDLogp).toBeCloseTo(-0.779422, 5);
  });

  it('k3 KL', () => {
    const a = k3Kl(-1.0, -1.2);
    expect(a.kl).toBeCloseTo(0.018731, 6);
    expect(a.dKlDLogp).toBeCloseTo(0.181269, 6);
    const b = k3Kl(-0.5, -0.4);
    expect(b.kl).toBeCloseTo(0.005171, 6);
    expect(b.dKlDLogp).toBeCloseTo(-0.105171, 6);
  });

  it('deepseekmath preset: β·k3 per token, sequence mean of token means', () => {
    const config = resolveAlgoConfig('grpo', { entropyCoef: 0 }, 'deepseekmath');
    expect(config.klCoef).toBe(0.04);
    // response 1 = two tokens with r = 1.25 then 0.9 and logp −1.0, −0.5 (ref −1.2, −0.4)
    const logp = [-1.0, -0.5];
    const seq: LossSequence = {
      kind: 'initial',
      question: 0,
      advantage: A[0],
      logp,
      logpOld: [logp[0] - Math.log(1.25), logp[1] - Math.log(0.9)],
      logpRef: [-1.2, -0.4],
    };
    const result = computeLoss([seq], config, ratioShaping(0.1));
    close(result.tokenLosses[0], [-1.038479, -0.779215], 5);
    expect(result.policyLoss).toBeCloseTo(-0.908847, 5);
  });

  it('DAPO overlong shaping (L_max 20480, L_cache 4096)', () => {
    close(
      [16384, 18432, 20480, 20481].map((len) => overlongPenalty(len, 20480, 4096)),
      [0, -0.5, -1.0, -1],
    );
  });
});

describe('TV6 — selection and trigger', () => {
  it('admits a correct refinement when there is one (random among correct ones)', () => {
    const rewards = [0, 1, 0, 1, 0, 0, 0];
    const seen = new Set<number>();
    for (let seed = 0; seed < 64; seed++) {
      const [chosen, ...rest] = selectRefinements(rewards, 1, createRng(seed));
      expect(rest).toEqual([]);
      expect([1, 3]).toContain(chosen);
      seen.add(chosen);
    }
    expect(seen).toEqual(new Set([1, 3]));
    expect(selectRefinements(rewards, 1, createRng(0), 'firstCorrect')).toEqual([1]);
  });

  it('admits any one when all are wrong (code: index 0)', () => {
    const zeros = [0, 0, 0, 0, 0, 0, 0];
    const seen = new Set<number>();
    for (let seed = 0; seed < 64; seed++) seen.add(selectRefinements(zeros, 1, createRng(seed))[0]);
    expect(seen.size).toBeGreaterThan(3);
    expect(selectRefinements(zeros, 1, createRng(0), 'firstCorrect')).toEqual([0]);
  });

  it('needsRefinement', () => {
    expect(needsRefinement([0, 0, 0, 0, 0, 0, 0], 'allIncorrect')).toBe(true);
    expect(needsRefinement([0, 1, 0, 0, 0, 0, 0], 'allIncorrect')).toBe(false);
    expect(needsRefinement([0, 1, 0, 0, 0, 0, 0], 'always')).toBe(true);
    expect(needsRefinement([1, 1, 1], 'always')).toBe(true);
  });
});
