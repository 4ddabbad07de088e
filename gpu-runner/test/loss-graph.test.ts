// The training graph's loss (engine ops, run by onnxruntime) against the plain-TypeScript
// reference objective of algo/loss.ts, on the tiny model's real log-probs: initial tokens with
// PPO clipping, refinement tokens with the shaping expression, the entropy bonus, and the k3 KL
// term to a reference policy (with its clamp). π_old and π_ref log-probs are the model's own plus
// seeded noise, so every term is away from its trivial value.
import { join } from 'node:path';
import { parseJobSpec } from '@cgrpo/contract';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aggregationWeights, type SequenceKind } from '../src/algo/aggregate';
import { type AlgoConfig, fromHyperparameters, resolveAlgoConfig } from '../src/algo/config';
import { computeLoss, type LossSequence } from '../src/algo/loss';
import { createRng } from '../src/algo/rng';
import { parseShapingSpec, shapingFunction } from '../src/algo/shaping';
import { ratioShaping, refinementTokenLoss } from '../src/algo/token-loss';
import { buildModel, createEngine, type Engine, exp, Graph, grad, mul, neg, reduceSum } from '../src/engine';
import { compileShaping, critiqueGrpoLoss, KL_INPUT, LOSS_INPUTS } from '../src/job/loss-graph';
import { lossFeeds, type TrainSequence } from '../src/job/train';
import { CausalLM } from '../src/model/model';
import { ROOT } from './harness';

let engine: Engine;
let model: CausalLM;

beforeAll(async () => {
  engine = await createEngine({ device: 'cpu' });
  model = await CausalLM.load(join(ROOT, 'gpu-runner', 'models', 'tiny-llama'), {
    engine,
    lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'], seed: 3 },
  });
}, 60_000);

afterAll(async () => {
  await model?.close();
  await engine?.close();
});

function hyperparameters(hp: Record<string, unknown>) {
  const r = parseJobSpec({
    model: { id: 'tiny-llama' },
    datasets: { train: { uri: 'file:x.jsonl' } },
    hyperparameters: hp,
  });
  if (!r.ok) throw new Error(JSON.stringify(r.fields));
  return r.spec.hyperparameters;
}

describe('the loss graph equals the reference objective', () => {
  for (const [name, hp] of [
    ['critique-grpo defaults', { max_response_tokens: 8 }],
    [
      'with clipping, entropy bonus and KL (clamped)',
      { clip_initial: true, entropy_coef: 0.01, kl_coef: 0.05, kl_clamp: 0.5, max_response_tokens: 8 },
    ],
    ['KL unclamped, token-mean aggregation', { kl_coef: 0.2, loss_aggregation: 'token_mean' }],
  ] as const) {
    it(name, async () => {
      const h = hyperparameters(hp);
      const algo = fromHyperparameters(h, 'critique-grpo', {
        expression: 'p / (p + gamma)',
        params: { gamma: 0.1 },
      });
      const tok = model.tokenizer;
      const prompt = (q: string) => tok.encode(`${q} =`);
      const seqs: TrainSequence[] = [
        { kind: 'initial', question: 0, sample: 0, advantage: 0.5, tokens: [], start: 0 },
        { kind: 'initial', question: 0, sample: 1, advantage: -0.25, tokens: [], start: 0 },
        { kind: 'refinement', question: 0, sample: 0, advantage: 0.8, tokens: [], start: 0 },
        { kind: 'initial', question: 1, sample: 0, advantage: -0.3, tokens: [], start: 0 },
      ];
      const texts = [' 7', ' 8 because', ' 7 after all', ' 12'];
      seqs.forEach((s, i) => {
        const p = prompt(i < 3 ? '3 + 4' : '5 + 7');
        s.tokens = [...p, ...tok.encode(texts[i])];
        s.start = p.length;
      });
      const scored = await model.score(seqs, { temperature: h.temperature });
      const rng = createRng(11, 'loss-graph-test');
      seqs.forEach((s, i) => {
        const logp = scored[i].logp;
        if (s.kind === 'initial') s.logpOld = logp.map((v) => v + (rng.next() - 0.5) * 0.6);
        s.logpRef = logp.map((v) => v + (rng.next() - 0.5) * 3);
      });

      const expected = computeLoss(
        seqs.map((s, i) => ({
          kind: s.kind,
          question: s.question,
          advantage: s.advantage,
          logp: Array.from(scored[i].logp),
          ...(s.logpOld ? { logpOld: Array.from(s.logpOld) } : {}),
          ...(algo.klCoef > 0 && s.logpRef ? { logpRef: Array.from(s.logpRef) } : {}),
          entropy: Array.from(scored[i].entropy),
        })),
        algo,
        shapingFunction(algo.shaping),
      );
      if (algo.klCoef > 0) expect(expected.meanKl).toBeGreaterThan(0.01);

      const trainer = await model.trainer({
        mode: 'lora',
        loss: critiqueGrpoLoss(algo),
        temperature: h.temperature,
        optimizer: { lr: 0, weightDecay: 0 },
      });
      const r = await trainer.step(seqs, lossFeeds(seqs, algo));
      expect(r.loss).toBeCloseTo(expected.loss, 4);
      expect(Math.abs(r.loss - expected.loss)).toBeLessThan(1e-4 * Math.max(1, Math.abs(expected.loss)));
      if (algo.klCoef > 0) expect(r.metrics.kl_mean[0]).toBeCloseTo(expected.meanKl, 4);
      else expect(r.metrics.kl_mean).toBeUndefined();
    }, 60_000);
  }
});

// ---- ∂L/∂logp of the graph against computeLoss, on synthetic per-token log-probs ----
// The loss hook is built on its own graph with logp as a graph input and differentiated with the
// engine's grad, so every token's gradient (not only the loss value) is compared, to 1e-6.

/** A seeded synthetic mini-batch: two questions, initial responses whose ratios fall inside and
 *  outside the clip range (and past a dual clip), refinements with p in [0.1, 0.9]. */
function syntheticBatch(algo: AlgoConfig, seed: number): LossSequence[] {
  const rng = createRng(seed, 'synthetic-batch');
  const f = Math.fround;
  const deltas = [0, 0.1, -0.1, 0.35, -0.35, 1.5, 0.02, -0.6];
  const specs: [SequenceKind, number, number, number][] = [
    ['initial', 0, 0.6, 5],
    ['initial', 0, -0.4, 7],
    ['initial', 0, -0.9, 4],
    ['refinement', 0, 0.8, 6],
    ['refinement', 0, -0.3, 3],
    ['initial', 1, 0.5, 8],
    ['initial', 1, -0.5, 2],
    ['refinement', 1, 0.7, 5],
  ];
  let k = 0;
  return specs
    .filter(([kind]) => algo.algorithm === 'critique-grpo' || kind === 'initial')
    .map(([kind, question, advantage, length]) => {
      const logp = Array.from({ length }, () => f(Math.log(0.1 + 0.8 * rng.next())));
      return {
        kind,
        question,
        advantage,
        logp,
        ...(kind === 'initial' ? { logpOld: logp.map((l) => f(l - deltas[k++ % deltas.length])) } : {}),
        logpRef: logp.map((l) => f(l + (rng.next() - 0.5) * 3)),
        entropy: logp.map(() => f(0.5 + 1.5 * rng.next())),
      };
    });
}

/** Runs the loss hook on its own graph: loss and ∂loss/∂logp per token ([batch][t], pads cut). */
async function graphLossAndGrad(algo: AlgoConfig, seqs: readonly LossSequence[]) {
  const g = new Graph();
  const dims = ['batch', 'seq'];
  const logp = g.input('logp', 'float32', dims);
  const entropy = g.input('entropy', 'float32', dims);
  const mask = g.input('mask', 'float32', dims);
  const { loss } = critiqueGrpoLoss(algo)({ logp, entropy, mask, input: (n, d, s) => g.input(n, d, s) });
  const [dLogp] = grad(loss, [logp]);
  const batch = seqs.length;
  const seq = Math.max(...seqs.map((s) => s.logp.length)) + 1; // one pad column at least
  const names = ['logp', 'entropy', 'mask', ...LOSS_INPUTS, ...(algo.klCoef > 0 ? [KL_INPUT] : [])];
  const a = Object.fromEntries(names.map((n) => [n, new Float32Array(batch * seq)]));
  const weights = aggregationWeights(
    seqs.map((s) => ({ kind: s.kind, question: s.question, length: s.logp.length })),
    algo.lossAggregation,
    algo.maxResponseLength,
  );
  const tokens = seqs.reduce((n, s) => n + s.logp.length, 0);
  seqs.forEach((s, b) => {
    s.logp.forEach((l, t) => {
      const at = b * seq + t;
      a.logp[at] = l;
      a.entropy[at] = s.entropy?.[t] ?? 0;
      a.mask[at] = 1;
      a.adv[at] = s.advantage;
      a.weight[at] = weights[b];
      a.is_initial[at] = s.kind === 'initial' ? 1 : 0;
      a.is_refinement[at] = s.kind === 'refinement' ? 1 : 0;
      a.logp_old[at] = s.logpOld?.[t] ?? 0;
      a.ent_weight[at] = 1 / tokens;
      if (a.logp_ref) a.logp_ref[at] = s.logpRef?.[t] ?? 0;
    });
  });
  const compiled = await engine.load(buildModel(g, { loss, dLogp }));
  const feeds = Object.fromEntries(Object.entries(a).map(([n, data]) => [n, { dims: [batch, seq], data }]));
  const { outputs } = await compiled.run(feeds);
  const d = outputs.dLogp.data as Float32Array;
  const pads: number[] = [];
  const rows = seqs.map((s, b) => {
    for (let t = s.logp.length; t < seq; t++) pads.push(d[b * seq + t]);
    return Array.from(d.subarray(b * seq, b * seq + s.logp.length));
  });
  return { loss: (outputs.loss.data as Float32Array)[0], dLogp: rows, pads };
}

const critique = (o: Partial<AlgoConfig> = {}) =>
  resolveAlgoConfig('critique-grpo', { maxResponseLength: 8, ...o });
const CLIP = { epsLow: 0.2, epsHigh: 0.28, dualClip: null };
const GRADIENT_CONFIGS: [string, AlgoConfig][] = [
  ...(['deepseekmath', 'verl-r1', 'dr-grpo', 'dapo'] as const).map((p): [string, AlgoConfig] => [
    `grpo preset ${p}`,
    resolveAlgoConfig('grpo', { maxResponseLength: 8 }, p),
  ]),
  ['grpo, no clip', resolveAlgoConfig('grpo', { maxResponseLength: 8, clipInitial: false, klCoef: 0 })],
  ['critique-grpo defaults (no clip)', critique()],
  ['critique-grpo, clip-higher', critique({ clipInitial: true, clip: CLIP })],
  ['critique-grpo, dual clip 3', critique({ clipInitial: true, clip: { ...CLIP, dualClip: 3 } })],
  ...(['sumOverMaxLen', 'tokenMean', 'seqMeanTokenMean', 'paperWeighted'] as const).map(
    (m): [string, AlgoConfig] => [
      `aggregation ${m} (clipped)`,
      critique({ lossAggregation: m, clipInitial: true }),
    ],
  ),
  ['KL clamped (0.3)', critique({ klCoef: 0.1, klClamp: 0.3 })],
  ['KL unclamped', critique({ klCoef: 0.1, klClamp: null })],
  ['entropy bonus', critique({ entropyCoef: 0.01, clipInitial: true })],
  [
    'custom shaping',
    critique({ shaping: { expression: 'p ^ alpha * exp(-p) + max(p, 0.3)', params: { alpha: 0.5 } } }),
  ],
];

describe('∂L/∂logp of the loss graph equals computeLoss().dLossDLogp (1e-6)', () => {
  it.each(GRADIENT_CONFIGS)('%s', async (_name, algo) => {
    const seqs = syntheticBatch(algo, 5);
    const want = computeLoss(seqs, algo, shapingFunction(algo.shaping));
    const got = await graphLossAndGrad(algo, seqs);
    expect(Math.abs(got.loss - want.loss)).toBeLessThan(1e-6);
    let nonzero = 0;
    for (const [s, row] of want.dLossDLogp.entries()) {
      for (const [t, w] of row.entries()) {
        expect(Math.abs(got.dLogp[s][t] - w), `sequence ${s} token ${t}`).toBeLessThan(1e-6);
        if (Math.abs(w) > 1e-4) nonzero++;
      }
    }
    expect(got.pads.every((v) => v === 0)).toBe(true);
    // most tokens carry a gradient that a doubled or dropped term would move by far more than 1e-6
    expect(nonzero).toBeGreaterThan(10);
  });

  it('the batch exercises the clip: tokens inside, outside and past the dual clip', () => {
    const algo = critique({ clipInitial: true, clip: { ...CLIP, dualClip: 3 } });
    const ratios = syntheticBatch(algo, 5).flatMap((s) =>
      s.logpOld ? s.logp.map((l, t) => Math.exp(l - (s.logpOld as number[])[t])) : [],
    );
    expect(ratios.some((r) => r > 0.8 && r < 1.28)).toBe(true);
    expect(ratios.some((r) => r < 0.8)).toBe(true);
    expect(ratios.some((r) => r > 3)).toBe(true);
  });
});

describe('the refinement term at p in 0.1–0.9 (closed form p/(p+γ), γ = 0.1)', () => {
  it('per-token loss and gradient equal −A·f(p) and −A·Ψ(p)·w, so γ off by 10% fails', async () => {
    const algo = critique({ lossAggregation: 'sumOverMaxLen', maxResponseLength: 5 });
    const ps = [0.1, 0.3, 0.5, 0.7, 0.9];
    const seqs: LossSequence[] = [
      { kind: 'refinement', question: 0, advantage: 1, logp: ps.map((p) => Math.fround(Math.log(p))) },
      { kind: 'refinement', question: 1, advantage: -0.5, logp: ps.map((p) => Math.fround(Math.log(p))) },
    ];
    const got = await graphLossAndGrad(algo, seqs);
    const w = 1 / (2 * 5);
    const closed = ratioShaping(0.1);
    let loss = 0;
    for (const [b, s] of seqs.entries()) {
      for (const [t, l] of s.logp.entries()) {
        const { f, dfDLogp } = closed(Math.exp(l));
        loss += -s.advantage * f * w;
        expect(Math.abs(got.dLogp[b][t] - -s.advantage * dfDLogp * w)).toBeLessThan(1e-6);
      }
    }
    expect(Math.abs(got.loss - loss)).toBeLessThan(1e-6);
    // hand-worked: p = 0.5, A = 1 → Ψ = 0.1·0.5/0.36 = 0.138889, × w = 0.0138889
    expect(got.dLogp[0][2]).toBeCloseTo(-0.0138889, 6);
    // γ × 1.1 would give Ψ(0.5) = 0.11·0.5/0.61² = 0.147810: 9e-4 away after weighting
    expect(Math.abs(got.dLogp[0][2] - -(0.11 * 0.5) / (0.61 * 0.61) / 10)).toBeGreaterThan(5e-4);
  });
});

// ---- the one shaping compiler (compileShaping) against TV2 and the CPU evaluator ----
async function shapingLossAndGrad(
  expression: string,
  params: Record<string, number>,
  A: number[],
  ps: number[],
) {
  const g = new Graph();
  const advantage = g.input('advantage', 'float64', ['n']);
  const logp = g.input('logp', 'float64', ['n']);
  const ast = parseShapingSpec({ expression, params });
  const tokenLoss = neg(mul(advantage, compileShaping(ast, exp(logp), params)));
  const [dLogp] = grad(reduceSum(tokenLoss, [0], false), [logp]);
  const { outputs } = await (await engine.load(buildModel(g, { tokenLoss, dLogp }))).run({
    advantage: { dims: [A.length], data: Float64Array.from(A) },
    logp: { dims: [ps.length], data: Float64Array.from(ps.map(Math.log)) },
  });
  return {
    loss: [...(outputs.tokenLoss.data as Float64Array)],
    grad: [...(outputs.dLogp.data as Float64Array)],
  };
}

describe('compileShaping (the only shaping compiler) and its gradient', () => {
  it('TV2: −A·f(p) and ∂/∂logp for p/(p+γ), γ = 0.1', async () => {
    const ps = [0.05, 0.1, 0.5, 0.9, 0.05, 0.1, 0.5, 0.9];
    const A = [0.8, 0.8, 0.8, 0.8, -0.2, -0.2, -0.2, -0.2];
    const { loss, grad: d } = await shapingLossAndGrad('p / (p + gamma)', { gamma: 0.1 }, A, ps);
    const wantLoss = [-0.266667, -0.4, -0.666667, -0.72, 0.066667, 0.1, 0.166667, 0.18];
    const wantGrad = [-0.177778, -0.2, -0.111111, -0.072, 0.044444, 0.05, 0.027778, 0.018];
    for (const [i, w] of wantLoss.entries()) expect(loss[i]).toBeCloseTo(w, 6);
    for (const [i, w] of wantGrad.entries()) expect(d[i]).toBeCloseTo(w, 6);
  });

  it('TV2: Ψ(p) itself (A = −1 makes the loss f and its gradient Ψ)', async () => {
    const ps = [0.01, 0.05, 0.1, 0.5, 0.9, 1.0];
    const { loss, grad: d } = await shapingLossAndGrad(
      'p / (p + gamma)',
      { gamma: 0.1 },
      Array(6).fill(-1),
      ps,
    );
    const f = [0.090909, 0.333333, 0.5, 0.833333, 0.9, 0.909091];
    const psi = [0.082645, 0.222222, 0.25, 0.138889, 0.09, 0.082645];
    for (const [i, w] of f.entries()) expect(loss[i]).toBeCloseTo(w, 6);
    for (const [i, w] of psi.entries()) expect(d[i]).toBeCloseTo(w, 6);
  });

  it.each([
    ['p ^ alpha * exp(-p) + log(p + 1)', { alpha: 0.5 }],
    ['clip(p, 0.2, 0.8) / (1 + sqrt(p))', {}],
    ['max(p, 0.3) - min(p, 0.6) * 2 ^ 3', {}],
    ['-(p - gamma) ^ 2 + exp(1)', { gamma: 0.1 }],
    ['2 * e', {}],
  ])('%s matches the CPU reference', async (expression, params) => {
    const ps = [0.07, 0.13, 0.37, 0.55, 0.83];
    const A = [0.5, -0.3, 1.2, -1, 0.25];
    const { loss, grad: d } = await shapingLossAndGrad(expression, params, A, ps);
    const reference = shapingFunction({ expression, params });
    for (const [i, p] of ps.entries()) {
      const want = refinementTokenLoss(A[i], Math.log(p), reference);
      expect(loss[i]).toBeCloseTo(want.loss, 9);
      expect(d[i]).toBeCloseTo(want.dLossDLogp, 9);
    }
  });

  it('an invalid expression is rejected with its field before any graph is built', () => {
    expect(() => critiqueGrpoLoss(critique({ shaping: { expression: 'p +', params: {} } }))).toThrow(
      /shaping\.expression/,
    );
  });
});
