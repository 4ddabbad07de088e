// Properties the formulas must have for any input, checked over seeded random inputs.
import { describe, expect, it } from 'vitest';
import { aggregate, aggregationWeights } from './aggregate';
import { resolveAlgoConfig } from './config';
import { dynamicSamplingDecision, dynamicSamplingFilter, hasMixedRewards, overlongPenalty } from './dapo';
import { computeLoss, type LossSequence } from './loss';
import { groupAdvantages, selectRefinements } from './rewards';
import { type CounterRng, createRng, shuffledIndices, uniformAt } from './rng';
import { shapingFunction } from './shaping';
import { initialTokenLoss, k3Kl, ratioShaping, refinementTokenLoss, tokenEntropy } from './token-loss';

const rng = createRng('properties');
const randomRewards = (n: number, binary: boolean) =>
  Array.from({ length: n }, () => (binary ? (rng.next() < 0.5 ? 0 : 1) : rng.next()));

describe('advantages', () => {
  it('are zero for a group with equal rewards, whatever the value and norm', () => {
    for (const value of [0, 0.3, 1]) {
      for (const n of [1, 2, 8]) {
        for (const norm of ['mean', 'meanStd'] as const) {
          expect(groupAdvantages(Array(n).fill(value), norm)).toEqual(Array(n).fill(0));
        }
      }
    }
  });

  it('sum to zero, keep the order of rewards, and meanStd has unit sample std', () => {
    for (let trial = 0; trial < 200; trial++) {
      const rewards = randomRewards(2 + (trial % 9), trial % 2 === 0);
      const a = groupAdvantages(rewards, 'mean');
      expect(a.reduce((s, x) => s + x, 0)).toBeCloseTo(0, 12);
      for (let i = 0; i < rewards.length; i++) {
        for (let j = 0; j < rewards.length; j++) {
          if (rewards[i] > rewards[j]) expect(a[i]).toBeGreaterThan(a[j]);
        }
      }
      const s = groupAdvantages(rewards, 'meanStd');
      if (new Set(rewards).size > 1) {
        const centred = groupAdvantages(rewards, 'mean');
        const std = Math.sqrt(centred.reduce((acc, x) => acc + x * x, 0) / (s.length - 1));
        const variance = s.reduce((acc, x) => acc + x * x, 0) / (s.length - 1);
        expect(Math.sqrt(variance)).toBeCloseTo(std / (std + 1e-6), 9);
      }
    }
  });

  it('rejects non-finite rewards instead of producing NaN', () => {
    expect(() => groupAdvantages([1, Number.NaN], 'mean')).toThrow(/reward 1/);
  });
});

describe('shaping', () => {
  it('with γ → 0 approaches the unshaped term −A (f → 1) and its gradient vanishes', () => {
    for (const p of [0.05, 0.3, 0.9]) {
      const errors = [1e-1, 1e-3, 1e-8].map((gamma) => {
        const term = refinementTokenLoss(0.7, Math.log(p), ratioShaping(gamma));
        return { lossError: Math.abs(term.loss - -0.7), grad: Math.abs(term.dLossDLogp) };
      });
      expect(errors[1].lossError).toBeLessThan(errors[0].lossError);
      expect(errors[2].lossError).toBeLessThan(1e-5);
      expect(errors[2].grad).toBeLessThan(1e-5);
    }
  });

  it('Ψ peaks at p = γ with value 1/4 and stays below it', () => {
    for (const gamma of [0.01, 0.1, 0.5]) {
      const shaping = ratioShaping(gamma);
      expect(shaping(gamma).dfDLogp).toBeCloseTo(0.25, 12);
      for (let i = 1; i <= 100; i++) expect(shaping(i / 100).dfDLogp).toBeLessThanOrEqual(0.25 + 1e-12);
    }
  });

  it('a parsed expression agrees with the closed form and with a finite difference in logp', () => {
    const parsed = shapingFunction({ expression: 'p / (p + gamma)', params: { gamma: 0.1 } });
    const custom = shapingFunction({ expression: 'clip(p, 0.01, 1) ^ alpha', params: { alpha: 0.5 } });
    for (let i = 0; i < 50; i++) {
      const p = 0.02 + 0.96 * rng.next();
      expect(parsed(p).f).toBeCloseTo(ratioShaping(0.1)(p).f, 12);
      expect(parsed(p).dfDLogp).toBeCloseTo(ratioShaping(0.1)(p).dfDLogp, 12);
      const h = 1e-6;
      const numeric = (custom(Math.exp(Math.log(p) + h)).f - custom(Math.exp(Math.log(p) - h)).f) / (2 * h);
      expect(custom(p).dfDLogp).toBeCloseTo(numeric, 6);
    }
  });

  it('rejects a bad spec naming the field', () => {
    expect(() => shapingFunction({ expression: 'p / (p + gama)', params: { gamma: 0.1 } })).toThrow(
      /shaping\.expression: at position 9/,
    );
  });
});

describe('initial token loss', () => {
  it('equals −A at r = 1 with or without clipping, and the gradient matches a finite difference', () => {
    const clip = { epsLow: 0.2, epsHigh: 0.28, dualClip: 3 };
    for (let i = 0; i < 200; i++) {
      const A = rng.next() * 4 - 2;
      const logpOld = Math.log(0.05 + 0.9 * rng.next());
      expect(initialTokenLoss(A, logpOld, logpOld, clip).loss).toBeCloseTo(-A, 12);
      const logp = logpOld + (rng.next() - 0.5);
      for (const c of [null, clip]) {
        const h = 1e-7;
        const numeric =
          (initialTokenLoss(A, logp + h, logpOld, c).loss - initialTokenLoss(A, logp - h, logpOld, c).loss) /
          (2 * h);
        expect(initialTokenLoss(A, logp, logpOld, c).dLossDLogp).toBeCloseTo(numeric, 4);
      }
    }
  });

  it('dual clip caps negative-advantage losses at −A·c', () => {
    const clip = { epsLow: 0.2, epsHigh: 0.2, dualClip: 3 };
    const term = initialTokenLoss(-0.5, Math.log(5), 0, clip);
    expect(term).toEqual({ loss: 1.5, dLossDLogp: 0 });
    // without the dual clip the same token costs −A·r = 2.5
    expect(initialTokenLoss(-0.5, Math.log(5), 0, { ...clip, dualClip: null }).loss).toBeCloseTo(2.5, 12);
    // positive advantages are never dual-clipped
    expect(initialTokenLoss(0.5, Math.log(5), 0, clip).loss).toBeCloseTo(-0.6, 12);
  });
});

describe('KL and entropy', () => {
  it('k3 is non-negative, zero at logp = logpRef, and clamps', () => {
    for (let i = 0; i < 100; i++) {
      const a = Math.log(rng.next() + 1e-3);
      const b = Math.log(rng.next() + 1e-3);
      expect(k3Kl(a, b).kl).toBeGreaterThanOrEqual(0);
    }
    expect(k3Kl(-0.7, -0.7)).toEqual({ kl: 0, dKlDLogp: 0 });
    expect(k3Kl(-30, 0, 10)).toEqual({ kl: 10, dKlDLogp: 0 });
  });

  it('token entropy is log V for uniform logits and 0 for a one-hot limit', () => {
    expect(tokenEntropy([3, 3, 3, 3])).toBeCloseTo(Math.log(4), 12);
    expect(tokenEntropy([1000, 0, 0])).toBeCloseTo(0, 12);
    expect(tokenEntropy([0, Math.log(3)])).toBeCloseTo(-(0.25 * Math.log(0.25) + 0.75 * Math.log(0.75)), 12);
  });
});

describe('aggregation', () => {
  const seqs = (lengths: number[]) =>
    lengths.map((length, i) => ({ kind: 'initial' as const, question: i % 2, length }));

  it('every mode is the weighted token sum, and constant losses give the expected means', () => {
    for (const mode of ['sumOverMaxLen', 'tokenMean', 'seqMeanTokenMean', 'paperWeighted'] as const) {
      const lengths = [3, 5, 1, 4];
      const losses = lengths.map((n) => Array(n).fill(2));
      const value = aggregate(losses, seqs(lengths), mode, 8);
      const weights = aggregationWeights(seqs(lengths), mode, 8);
      expect(value).toBeCloseTo(
        weights.reduce((s, w, i) => s + w * 2 * lengths[i], 0),
        12,
      );
      if (mode === 'tokenMean' || mode === 'seqMeanTokenMean') expect(value).toBeCloseTo(2, 12);
    }
  });

  it('sumOverMaxLen does not depend on how tokens are split into lengths (no length bias)', () => {
    const a = aggregate([[1, 1, 1, 1], [1]], seqs([4, 1]), 'sumOverMaxLen', 10);
    const b = aggregate(
      [
        [1, 1],
        [1, 1, 1],
      ],
      seqs([2, 3]),
      'sumOverMaxLen',
      10,
    );
    expect(a).toBeCloseTo(b, 12);
  });

  it('empty sequences and empty batches give 0, never NaN', () => {
    for (const mode of ['sumOverMaxLen', 'tokenMean', 'seqMeanTokenMean', 'paperWeighted'] as const) {
      expect(aggregate([], [], mode, 4)).toBe(0);
      expect(aggregate([[]], seqs([0]), mode, 4)).toBe(0);
    }
  });

  it('computeLoss gradient matches a finite difference of the loss', () => {
    const config = resolveAlgoConfig('critique-grpo', {
      maxResponseLength: 6,
      klCoef: 0.05,
      clipInitial: true,
      entropyCoef: 0,
    });
    const shaping = ratioShaping(0.1);
    const make = (): LossSequence[] => [
      {
        kind: 'initial',
        question: 0,
        advantage: 0.4,
        logp: [-0.3, -1.2, -2],
        logpOld: [-0.5, -1, -2.1],
        logpRef: [-0.4, -1.1, -1.8],
      },
      { kind: 'refinement', question: 0, advantage: 0.8, logp: [-2.5, -0.2], logpRef: [-2, -0.3] },
    ];
    const base = computeLoss(make(), config, shaping);
    for (const [s, t] of [
      [0, 0],
      [0, 2],
      [1, 0],
      [1, 1],
    ]) {
      const h = 1e-6;
      const plus = make();
      const minus = make();
      (plus[s].logp as number[])[t] += h;
      (minus[s].logp as number[])[t] -= h;
      const numeric =
        (computeLoss(plus, config, shaping).loss - computeLoss(minus, config, shaping).loss) / (2 * h);
      expect(base.dLossDLogp[s][t]).toBeCloseTo(numeric, 6);
    }
  });

  it('computeLoss names the sequence with missing inputs', () => {
    const config = resolveAlgoConfig('critique-grpo', { entropyCoef: 0 });
    expect(() =>
      computeLoss([{ kind: 'initial', question: 0, advantage: 1, logp: [-1] }], config, ratioShaping(0.1)),
    ).toThrow(/sequence 0: logpOld/);
  });
});

describe('selection', () => {
  it('always takes correct refinements first and never a missing one', () => {
    for (let trial = 0; trial < 200; trial++) {
      const rewards = randomRewards(7, true).map((r, i) =>
        i === trial % 7 ? { missing: true as const, reason: 'timeout' } : r,
      );
      const k = 1 + (trial % 3);
      const chosen = selectRefinements(rewards, k, createRng(trial));
      const present = rewards.filter((r): r is number => typeof r === 'number');
      expect(chosen).toHaveLength(Math.min(k, present.length));
      expect(chosen).not.toContain(trial % 7);
      const chosenRewards = chosen.map((i) => rewards[i] as number);
      const best = [...present].sort((a, b) => b - a).slice(0, k);
      expect(chosenRewards.sort((a, b) => b - a)).toEqual(best);
    }
  });
});

describe('DAPO', () => {
  it('overlong penalty is 0 before the buffer, linear inside, −1 beyond', () => {
    expect(overlongPenalty(0, 100, 20)).toBe(0);
    expect(overlongPenalty(80, 100, 20)).toBe(0);
    expect(overlongPenalty(90, 100, 20)).toBeCloseTo(-0.5, 12);
    expect(overlongPenalty(100, 100, 20)).toBe(-1);
    expect(overlongPenalty(1000, 100, 20)).toBe(-1);
  });

  it('dynamic sampling keeps mixed groups and decides when to stop sampling', () => {
    expect(hasMixedRewards([1, 1, 1])).toBe(false);
    expect(hasMixedRewards([0, 0, { missing: true, reason: 'x' }])).toBe(false);
    expect(
      dynamicSamplingFilter([
        [0, 0],
        [0, 1],
        [1, 1],
        [1, 0.5],
      ]),
    ).toEqual([1, 3]);
    expect(dynamicSamplingDecision(10, 8, 0, 4)).toEqual({ action: 'train', use: 8 });
    expect(dynamicSamplingDecision(5, 8, 1, 4)).toEqual({ action: 'sample-more', missing: 3 });
    expect(dynamicSamplingDecision(5, 8, 4, 4)).toEqual({ action: 'train', use: 5 });
  });
});

describe('rng', () => {
  it('is deterministic per seed and labels, differs across them, and can seek', () => {
    const draw = (r: CounterRng) => Array.from({ length: 5 }, () => r.next());
    expect(draw(createRng(7, 'select', 3))).toEqual(draw(createRng(7, 'select', 3)));
    expect(draw(createRng(7, 'select', 3))).not.toEqual(draw(createRng(7, 'select', 4)));
    expect(draw(createRng(7))).not.toEqual(draw(createRng(8)));
    const r = createRng(42);
    draw(r);
    const sixth = r.next();
    expect(createRng(42).seek(5).next()).toBe(sixth);
    expect(uniformAt(createRng(42).key, 5)).toBe(sixth);
  });

  it('is roughly uniform, and shuffles are permutations with every position reachable', () => {
    const r = createRng('uniformity');
    const buckets = Array(10).fill(0);
    for (let i = 0; i < 20_000; i++) {
      const x = r.next();
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
      buckets[Math.floor(x * 10)]++;
    }
    for (const count of buckets) expect(Math.abs(count - 2000)).toBeLessThan(200);
    const firsts = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const order = shuffledIndices(5, r);
      expect([...order].sort()).toEqual([0, 1, 2, 3, 4]);
      firsts.add(order[0]);
    }
    expect(firsts.size).toBe(5);
    expect(() => createRng(-1)).toThrow(/non-negative/);
  });
});
