// The engine's gradient of the compiled shaping term, run in onnxruntime-node on the CPU, against
// TV2 (docs/critique-grpo.md §7) and against the CPU reference evaluator.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModel, createEngine, type Engine, Graph, grad, reduceSum } from '../engine';
import { shapingFunction } from './shaping';
import { refinementLossGraph } from './shaping-graph';
import { refinementTokenLoss } from './token-loss';

let engine: Engine;
beforeAll(async () => {
  engine = await createEngine({ worker: false, threads: 1, graphOptimization: 'basic' });
});
afterAll(async () => {
  await engine.close();
});

async function lossAndGrad(expression: string, params: Record<string, number>, A: number[], ps: number[]) {
  const g = new Graph();
  const advantage = g.input('advantage', 'float64', ['n']);
  const logp = g.input('logp', 'float64', ['n']);
  const tokenLoss = refinementLossGraph(advantage, logp, { expression, params });
  const [dLogp] = grad(reduceSum(tokenLoss, [0], false), [logp]);
  const model = buildModel(g, { tokenLoss, dLogp });
  const { outputs } = await (await engine.load(model)).run({
    advantage: { dims: [A.length], data: Float64Array.from(A) },
    logp: { dims: [ps.length], data: Float64Array.from(ps.map(Math.log)) },
  });
  return {
    loss: [...(outputs.tokenLoss.data as Float64Array)],
    grad: [...(outputs.dLogp.data as Float64Array)],
  };
}

describe('shaping compiled into engine ops', () => {
  it('TV2: −A·f(p) and ∂/∂logp for p/(p+γ), γ = 0.1', async () => {
    const ps = [0.05, 0.1, 0.5, 0.9, 0.05, 0.1, 0.5, 0.9];
    const A = [0.8, 0.8, 0.8, 0.8, -0.2, -0.2, -0.2, -0.2];
    const { loss, grad: g } = await lossAndGrad('p / (p + gamma)', { gamma: 0.1 }, A, ps);
    const wantLoss = [-0.266667, -0.4, -0.666667, -0.72, 0.066667, 0.1, 0.166667, 0.18];
    const wantGrad = [-0.177778, -0.2, -0.111111, -0.072, 0.044444, 0.05, 0.027778, 0.018];
    for (const [i, w] of wantLoss.entries()) expect(loss[i]).toBeCloseTo(w, 6);
    for (const [i, w] of wantGrad.entries()) expect(g[i]).toBeCloseTo(w, 6);
  });

  it('TV2: Ψ(p) itself (A = −1 makes the loss f and its gradient Ψ)', async () => {
    const ps = [0.01, 0.05, 0.1, 0.5, 0.9, 1.0];
    const { loss, grad: g } = await lossAndGrad('p / (p + gamma)', { gamma: 0.1 }, Array(6).fill(-1), ps);
    const f = [0.090909, 0.333333, 0.5, 0.833333, 0.9, 0.909091];
    const psi = [0.082645, 0.222222, 0.25, 0.138889, 0.09, 0.082645];
    for (const [i, w] of f.entries()) expect(loss[i]).toBeCloseTo(w, 6);
    for (const [i, w] of psi.entries()) expect(g[i]).toBeCloseTo(w, 6);
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
    const { loss, grad: g } = await lossAndGrad(expression, params, A, ps);
    const reference = shapingFunction({ expression, params });
    for (const [i, p] of ps.entries()) {
      const want = refinementTokenLoss(A[i], Math.log(p), reference);
      expect(loss[i]).toBeCloseTo(want.loss, 9);
      expect(g[i]).toBeCloseTo(want.dLossDLogp, 9);
    }
  });

  it('rejects an invalid expression before building anything', () => {
    const g = new Graph();
    const logp = g.input('logp', 'float64', ['n']);
    expect(() => refinementLossGraph(logp, logp, { expression: 'p +', params: {} })).toThrow(
      /shaping\.expression/,
    );
  });
});
