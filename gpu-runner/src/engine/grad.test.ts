// Every differentiable op's VJP against central finite differences, evaluated by the real
// onnxruntime-node CPU provider: float64 where ORT has the op in double (tolerance
// |err| ≤ 1e-6 + 1e-5·|fd|, step 1e-6), else float32 (|err| ≤ 1e-2 + 2e-2·|fd|, step 1e-2).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DType } from './dtype';
import { createEngine, type Engine } from './engine';
import { grad, VJP } from './grad';
import { Graph, type Tensor } from './graph';
import * as nn from './nn';
import * as op from './ops';
import { buildModel } from './serialize';
import { checkGradient, type GradCase } from './testing';

let engine: Engine;
beforeAll(async () => {
  // basic optimization: extended fusions (QuickGelu) have no float64 kernels in ORT.
  engine = await createEngine({ worker: false, threads: 1, graphOptimization: 'basic' });
});
afterAll(async () => {
  await engine.close();
});

const int64 = (g: Graph, dims: number[], values: number[]) => g.constant('int64', dims, values);
const bool = (g: Graph, dims: number[], values: number[]) => g.constant('bool', dims, values);

const pos = { lo: 0.5, hi: 2 };
const cases: Record<string, GradCase> = {
  Neg: { params: [{ shape: [3, 4] }], build: (_g, [x]) => op.neg(x) },
  Exp: { params: [{ shape: [3, 4] }], build: (_g, [x]) => op.exp(x) },
  Log: { params: [{ shape: [3, 4], ...pos }], build: (_g, [x]) => op.log(x) },
  Sqrt: { params: [{ shape: [3, 4], ...pos }], build: (_g, [x]) => op.sqrt(x) },
  Reciprocal: { params: [{ shape: [3, 4], ...pos }], build: (_g, [x]) => op.reciprocal(x) },
  Tanh: { params: [{ shape: [3, 4] }], build: (_g, [x]) => op.tanh(x) },
  Sigmoid: { params: [{ shape: [3, 4] }], build: (_g, [x]) => op.sigmoid(x) },
  Erf: { params: [{ shape: [3, 4] }], build: (_g, [x]) => op.erf(x) },
  Sin: { params: [{ shape: [3, 4] }], build: (_g, [x]) => op.sin(x) },
  Cos: { params: [{ shape: [3, 4] }], build: (_g, [x]) => op.cos(x) },
  Abs: {
    params: [
      { shape: [3, 4], ...pos },
      { shape: [3, 4], lo: -2, hi: -0.5 },
    ],
    build: (_g, [x, y]) => op.add(op.abs(x), op.abs(y)),
  },
  Relu: {
    params: [
      { shape: [3, 4], ...pos },
      { shape: [3, 4], lo: -2, hi: -0.5 },
    ],
    build: (_g, [x, y]) => op.add(op.relu(x), op.relu(y)),
  },
  Identity: { params: [{ shape: [5] }], build: (_g, [x]) => op.identity(x) },
  Add: { params: [{ shape: [2, 3, 4] }, { shape: [3, 1] }], build: (_g, [a, b]) => op.add(a, b) },
  Sub: { params: [{ shape: [4] }, { shape: [2, 3, 4] }], build: (_g, [a, b]) => op.sub(a, b) },
  Mul: { params: [{ shape: [2, 1, 4] }, { shape: [3, 1] }], build: (_g, [a, b]) => op.mul(a, b) },
  Div: { params: [{ shape: [2, 3] }, { shape: [1, 3], ...pos }], build: (_g, [a, b]) => op.div(a, b) },
  Pow: { params: [{ shape: [2, 3], ...pos }, { shape: [3] }], build: (_g, [a, b]) => op.pow(a, b) },
  Min: { params: [{ shape: [2, 3] }, { shape: [3] }], build: (_g, [a, b]) => op.minimum(a, b) },
  Max: { params: [{ shape: [2, 3] }, { shape: [2, 1] }], build: (_g, [a, b]) => op.maximum(a, b) },
  Where: {
    params: [{ shape: [2, 3] }, { shape: [3] }],
    build: (g, [a, b]) => op.where(bool(g, [2, 3], [1, 0, 1, 0, 0, 1]), a, b),
  },
  // float32 → float64 → float32: in float64 the FD would only see float32 rounding.
  Cast: {
    dtype: 'float32',
    params: [{ shape: [3] }],
    build: (_g, [x]) => op.cast(op.mul(op.cast(x, 'float64'), 1.5), 'float32'),
  },
  MatMul: { params: [{ shape: [2, 3, 4] }, { shape: [4, 5] }], build: (_g, [a, b]) => op.matmul(a, b) },
  'MatMul (batched, broadcast)': {
    params: [{ shape: [2, 1, 3, 4] }, { shape: [3, 4, 2] }],
    build: (_g, [a, b]) => op.matmul(a, b),
  },
  ReduceSum: { params: [{ shape: [2, 3, 4] }], build: (_g, [x]) => op.reduceSum(x, [0, 2], false) },
  ReduceMean: { params: [{ shape: [2, 3, 4] }], build: (_g, [x]) => op.reduceMean(x, [1], true) },
  'ReduceMean (symbolic dims)': {
    params: [{ shape: [3, 4], dims: ['rows', 4] }],
    build: (_g, [x]) => op.reshape(op.reduceMean(x, [0], false), [4]),
  },
  ReduceMax: { params: [{ shape: [3, 5] }], build: (_g, [x]) => op.reduceMax(x, [-1], false) },
  Softmax: { params: [{ shape: [2, 5] }], build: (_g, [x]) => op.softmax(x, -1) },
  LogSoftmax: { params: [{ shape: [2, 5] }], build: (_g, [x]) => op.logSoftmax(x, 0) },
  Reshape: { params: [{ shape: [2, 6] }], build: (_g, [x]) => op.reshape(x, [3, -1, 2]) },
  Transpose: { params: [{ shape: [2, 3, 4] }], build: (_g, [x]) => op.transpose(x, [2, 0, 1]) },
  Expand: { params: [{ shape: [3, 1] }], build: (_g, [x]) => op.expand(x, [2, 3, 4]) },
  Concat: { params: [{ shape: [2, 3] }, { shape: [2, 1] }], build: (_g, [a, b]) => op.concat([a, b, a], 1) },
  Slice: {
    params: [{ shape: [4, 6] }],
    build: (_g, [x]) => op.slice(x, [1, -4], [3, Number.POSITIVE_INFINITY], [0, 1]),
  },
  'Slice (symbolic dims)': {
    params: [{ shape: [5, 3], dims: ['n', 3] }],
    build: (_g, [x]) => op.reshape(op.slice(x, [-3], [Number.POSITIVE_INFINITY], [0]), [3, 3]),
  },
  Unsqueeze: { params: [{ shape: [2, 3] }], build: (_g, [x]) => op.unsqueeze(x, [0, -1]) },
  Squeeze: { params: [{ shape: [2, 1, 3] }], build: (_g, [x]) => op.squeeze(x, [1]) },
  Gather: {
    params: [{ shape: [5, 3] }],
    build: (g, [x]) => op.gather(x, int64(g, [2, 3], [0, 4, 2, 2, 1, 0]), 0),
  },
  GatherElements: {
    params: [{ shape: [2, 4] }],
    build: (g, [x]) => op.gatherElements(x, int64(g, [2, 3], [3, 0, 3, 1, 1, 2]), -1),
  },
  Trilu: { params: [{ shape: [2, 3, 3] }], build: (_g, [x]) => op.trilu(x, false, 0) },
  CumSum: { params: [{ shape: [2, 4] }], build: (_g, [x]) => op.cumsum(x, 1, { exclusive: true }) },
};

describe('VJP rules vs central finite differences (onnxruntime-node CPU)', () => {
  it('has a test for every rule in the table', () => {
    const tested = new Set(Object.keys(cases).map((k) => k.split(' ')[0]));
    expect(Object.keys(VJP).filter((k) => !tested.has(k))).toEqual([]);
  });
  for (const [name, c] of Object.entries(cases)) {
    it(name, async () => {
      const report = await checkGradient(engine, c);
      expect(report.checked).toBeGreaterThan(0);
      if (process.env.ENGINE_GRAD_REPORT)
        console.log(`GRADREPORT ${name} ${report.dtype} ${report.maxError.toExponential(2)}`);
      expect(report.worst, `${name} in ${report.dtype}: max error ${report.maxError}`).toBeLessThanOrEqual(1);
    });
  }
});

describe('fused rules vs their composite forms', () => {
  it('Softmax and LogSoftmax: values and gradients match the primitives-only versions', async () => {
    const g = new Graph();
    const x = g.param('x', 'float64', [3, 5]);
    const w = g.constant(
      'float64',
      [3, 5],
      Array.from({ length: 15 }, (_, i) => Math.sin(i)),
    );
    const fused = [op.softmax(x), op.logSoftmax(x)];
    const built = [nn.softmaxComposite(x), op.log(nn.softmaxComposite(x))];
    const outputs: Record<string, Tensor> = {};
    [...fused, ...built].forEach((y, i) => {
      const loss = op.reduceSum(op.mul(y, w), undefined, false);
      outputs[`y${i}`] = y;
      outputs[`g${i}`] = grad(loss, [x])[0];
    });
    const data = Float64Array.from({ length: 15 }, (_, i) => Math.cos(3 * i) * 2);
    const { outputs: o } = await (await engine.load(buildModel(g, outputs))).run({
      x: { dims: [3, 5], data },
    });
    for (const k of ['y', 'g'])
      for (const i of [0, 1])
        for (let j = 0; j < 15; j++)
          expect(o[`${k}${i}`].data[j]).toBeCloseTo(Number(o[`${k}${i + 2}`].data[j]), 12);
  });
});

const composite = (
  build: (g: Graph, p: Tensor[], d: DType) => Tensor,
  params: GradCase['params'],
): GradCase => ({ build, params });
describe('composite ops vs finite differences', () => {
  const compositeCases: Record<string, GradCase> = {
    silu: composite((_g, [x]) => nn.silu(x), [{ shape: [3, 4] }]),
    gelu: composite((_g, [x]) => nn.gelu(x), [{ shape: [3, 4] }]),
    rmsNorm: composite((_g, [x, w]) => nn.rmsNorm(x, w, 1e-5), [{ shape: [2, 3, 8] }, { shape: [8] }]),
    rope: composite(
      (g, [x]) => {
        const { cos, sin } = nn.ropeTables(int64(g, [3], [0, 1, 2]), 4);
        return nn.rope(x, op.cast(cos, x.dtype), op.cast(sin, x.dtype));
      },
      [{ shape: [1, 2, 3, 4] }],
    ),
    'causalAttention (GQA 4q/2kv heads)': composite(
      (_g, [q, k, v]) => nn.causalAttention(q, k, v),
      [{ shape: [1, 4, 3, 2] }, { shape: [1, 2, 3, 2] }, { shape: [1, 2, 3, 2] }],
    ),
    'causalAttention (KV cache: 2 queries, 4 keys)': composite(
      (_g, [q, k, v]) => nn.causalAttention(q, k, v),
      [{ shape: [1, 2, 2, 2] }, { shape: [1, 1, 4, 2] }, { shape: [1, 1, 4, 2] }],
    ),
    tokenLogProbs: composite(
      (g, [x]) => nn.tokenLogProbs(x, int64(g, [2, 2], [1, 4, 0, 2])),
      [{ shape: [2, 2, 5] }],
    ),
    entropy: composite((_g, [x]) => nn.entropy(x), [{ shape: [3, 5] }]),
    softmaxComposite: composite((_g, [x]) => nn.softmaxComposite(x), [{ shape: [2, 5] }]),
  };
  for (const [name, c] of Object.entries(compositeCases)) {
    it(name, async () => {
      const report = await checkGradient(engine, c);
      expect(report.worst, `${name} in ${report.dtype}: max error ${report.maxError}`).toBeLessThanOrEqual(1);
    });
  }
});

/** Runs grad(Σ y) w.r.t. float64 params fed with `values`; returns each gradient as an array. */
async function exactGrads(
  shapes: number[][],
  values: number[][],
  build: (g: Graph, p: Tensor[]) => Tensor,
): Promise<number[][]> {
  const g = new Graph();
  const ps = shapes.map((s, i) => g.param(`p${i}`, 'float64', s));
  const grads = grad(op.reduceSum(build(g, ps), undefined, false), ps);
  const outputs = Object.fromEntries(grads.map((t, i) => [`g${i}`, t]));
  const feeds = Object.fromEntries(
    shapes.map((s, i) => [`p${i}`, { dims: s, data: Float64Array.from(values[i]) }]),
  );
  const { outputs: o } = await (await engine.load(buildModel(g, outputs))).run(feeds);
  return grads.map((_, i) => Array.from(o[`g${i}`].data as Float64Array));
}

describe('edges with exact expected gradients', () => {
  it('Max: the winner gets the gradient, a tie splits it in half (torch.maximum)', async () => {
    const [da, db] = await exactGrads(
      [[4], [4]],
      [
        [1, 2, 3, -1],
        [0, 2, 5, -1],
      ],
      (_g, [a, b]) => op.maximum(a, b),
    );
    expect(da).toEqual([1, 0.5, 0, 0.5]);
    expect(db).toEqual([0, 0.5, 1, 0.5]);
  });

  it('Min: ties split in half, broadcast ties summed back', async () => {
    const [da, db] = await exactGrads(
      [[2, 3], [3]],
      [
        [1, 2, 3, 0, 2, 9],
        [1, 1, 4],
      ],
      (_g, [a, b]) => op.minimum(a, b),
    );
    expect(da).toEqual([0.5, 0, 1, 1, 0, 0]);
    expect(db).toEqual([0.5, 2, 1]);
  });

  it('PPO clip: max(−A·r, −A·clip(r)) inside the range gives ∂/∂r = −A exactly, not 2·(−A)', async () => {
    const [dr] = await exactGrads([[3]], [[1, 1.1, 1.5]], (_g, [r]) => {
      const A = 0.5;
      return op.maximum(op.mul(r, -A), op.mul(op.minimum(op.maximum(r, 0.8), 1.2), -A));
    });
    expect(dr).toEqual([-0.5, -0.5, 0]); // r = 1.5 is clipped: no gradient
  });

  it('ReduceMax: tied maxima share the gradient evenly (torch.amax)', async () => {
    const [dx] = await exactGrads([[2, 4]], [[1, 3, 3, 2, 5, 5, 5, 0]], (_g, [x]) =>
      op.reduceMax(x, [1], false),
    );
    expect(dx).toEqual([0, 0.5, 0.5, 0, 1 / 3, 1 / 3, 1 / 3, 0]);
  });

  it('Pow at a non-positive base: finite, PyTorch values (0 for the exponent)', async () => {
    const [dx, de] = await exactGrads(
      [[4], [4]],
      [
        [-2, 0, 0, -1.5],
        [2, 2, 0, 3],
      ],
      (_g, [x, e]) => op.pow(x, e),
    );
    expect(dx).toEqual([-4, 0, 0, 6.75]);
    expect(de).toEqual([0, 0, 0, 0]);
  });

  it('Slice with starts outside the range pads back where ONNX clamped', async () => {
    const [dx] = await exactGrads([[4, 6]], [Array.from({ length: 24 }, (_, i) => i)], (_g, [x]) =>
      op.slice(x, [-10, 2], [2, 100], [0, 1]),
    );
    const row = [0, 0, 1, 1, 1, 1];
    expect(dx).toEqual([...row, ...row, ...Array(12).fill(0)]);
    const [empty] = await exactGrads([[4, 6]], [Array(24).fill(1)], (_g, [x]) =>
      op.slice(x, [9], [Number.POSITIVE_INFINITY], [1]),
    );
    expect(empty).toEqual(Array(24).fill(0));
  });

  it('Slice with symbolic dims clamps a too-negative start in the graph', async () => {
    const g = new Graph();
    const x = g.param('x', 'float64', ['n', 3]);
    const [dx] = grad(op.reduceSum(op.slice(x, [-9], [2], [0]), undefined, false), [x]);
    const { outputs } = await (await engine.load(buildModel(g, { dx }))).run({
      x: { dims: [4, 3], data: new Float64Array(12) },
    });
    expect(Array.from(outputs.dx.data as Float64Array)).toEqual([1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
  });
});
