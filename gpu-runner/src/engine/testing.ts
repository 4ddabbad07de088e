// Helpers for the engine's own tests: a seeded RNG and a gradient checker that compares
// grad() against central finite differences, both evaluated by onnxruntime.
import type { DType, TypedArray } from './dtype';
import type { Engine } from './engine';
import { grad } from './grad';
import { Graph, type Tensor } from './graph';
import { mul, reduceSum } from './ops';
import { buildModel } from './serialize';

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface GradCase {
  /** Builds the op under test from float params (declared by the checker) and returns its output. */
  build: (g: Graph, params: Tensor[], dtype: DType) => Tensor;
  /** Shapes of the params; values drawn uniformly in [lo, hi) (default [-1, 1)). */
  /** Run only in this dtype (e.g. when the op's point is a precision change). */
  dtype?: DType;
  params: { shape: number[]; lo?: number; hi?: number; name?: string; dims?: (number | string)[] }[];
}

export interface GradReport {
  dtype: DType;
  maxError: number;
  /** Largest |analytic − numeric| / (atol + rtol·|numeric|); ≤ 1 passes. */
  worst: number;
  checked: number;
}

/** Checks d(sum(out · v))/d(params) against central differences, in float64 when onnxruntime's
 *  CPU provider has every op of the graph in double, else float32. */
export async function checkGradient(
  engine: Engine,
  c: GradCase,
  seed = 1,
  forceDtype?: DType,
): Promise<GradReport> {
  const only = forceDtype ?? c.dtype;
  const dtypes: DType[] = only ? [only] : ['float64', 'float32'];
  let lastError: unknown;
  for (const dtype of dtypes) {
    try {
      return await checkIn(engine, c, seed, dtype);
    } catch (e) {
      lastError = e;
      if (!/NOT_IMPLEMENTED|Could not find an implementation|not supported|Type Error|type/i.test(String(e)))
        throw e;
    }
  }
  throw lastError;
}

async function checkIn(engine: Engine, c: GradCase, seed: number, dtype: DType): Promise<GradReport> {
  const random = rng(seed);
  const g = new Graph();
  const params = c.params.map((p, i) => g.param(p.name ?? `p${i}`, dtype, p.dims ?? p.shape));
  const out = c.build(g, params, dtype);
  const outDims = out.shape.map((d) => {
    if (typeof d !== 'number') throw new Error(`gradient check: output dim ${d} must be static`);
    return d;
  });
  const size = outDims.reduce((a, b) => a * b, 1);
  const weights = g.constant(
    dtype,
    outDims,
    Array.from({ length: size }, () => random() * 2 - 1),
  );
  const loss = reduceSum(mul(out, weights), undefined, false);
  const grads = grad(loss, params);
  const model = buildModel(g, Object.fromEntries([['loss', loss], ...grads.map((t, i) => [`grad${i}`, t])]));
  const lossOnly = buildModel(g, { loss });
  const [full, fwd] = [await engine.load(model), await engine.load(lossOnly)];
  const values = c.params.map((p) => {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const [lo, hi] = [p.lo ?? -1, p.hi ?? 1];
    const drawn = Array.from({ length: n }, () => lo + random() * (hi - lo));
    return dtype === 'float64' ? Float64Array.from(drawn) : Float32Array.from(drawn);
  });
  const feeds = () =>
    Object.fromEntries(
      params.map((p, i) => [p.name, { dims: c.params[i].shape, data: values[i] as TypedArray }]),
    );
  const analytic = (await full.run(feeds())).outputs;
  const eps = dtype === 'float64' ? 1e-6 : 1e-2;
  const [atol, rtol] = dtype === 'float64' ? [1e-6, 1e-5] : [1e-2, 2e-2];
  let maxError = 0;
  let worst = 0;
  let checked = 0;
  for (let i = 0; i < params.length; i++) {
    const a = analytic[`grad${i}`].data as Float64Array;
    for (let j = 0; j < values[i].length; j++) {
      const x0 = values[i][j];
      values[i][j] = x0 + eps;
      const up = Number((await fwd.run(feeds())).outputs.loss.data[0]);
      values[i][j] = x0 - eps;
      const down = Number((await fwd.run(feeds())).outputs.loss.data[0]);
      values[i][j] = x0;
      const numeric = (up - down) / (2 * eps);
      const err = Math.abs(a[j] - numeric);
      maxError = Math.max(maxError, err);
      worst = Math.max(worst, err / (atol + rtol * Math.abs(numeric)));
      checked += 1;
    }
  }
  return { dtype, maxError, worst, checked };
}
