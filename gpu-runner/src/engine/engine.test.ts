// Training, optimizer, runtime and device tests on the real onnxruntime-node CPU provider.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loop } from './control';
import { hasVulkanLoader, librarySearchPath, probeCuda } from './device';
import { createEngine, type Engine, selectDevice, type TensorValue } from './engine';
import { Graph, type Tensor } from './graph';
import * as nn from './nn';
import { ModelProto } from './onnx-schema';
import * as op from './ops';
import { learningRate } from './optim';
import { buildModel } from './serialize';
import { preload } from './session-host.mjs';
import { checkGradient, rng } from './testing';
import { buildAccumulatingTrainStep, buildTrainStep, Trainer } from './train';
import { validateModel } from './validate';

let engine: Engine;
beforeAll(async () => {
  engine = await createEngine({ device: 'cpu', threads: 2 });
});
afterAll(async () => {
  await engine.close();
});

const f32 = (dims: number[], data: ArrayLike<number>): TensorValue => ({
  dims,
  data: Float32Array.from(data),
});
function randn(random: () => number, n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, () => {
    const u = Math.max(random(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random()) * scale;
  });
}

describe('AdamW', () => {
  it('matches a hand-computed reference for 3 steps (bias correction, decoupled decay, clipping)', async () => {
    const g = new Graph();
    const x = g.input('x', 'float32', [2, 2]);
    const w = g.param('w', 'float32', [2, 2]);
    const loss = op.reduceSum(op.mul(w, x), undefined, false); // dloss/dw = x
    const cfg = { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1 };
    const trainer = await Trainer.create(
      engine,
      buildTrainStep({ graph: g, loss, params: [w], optimizer: cfg }),
    );
    const w0 = [0.5, -0.3, 0.2, 1.0];
    await trainer.init({ w: f32([2, 2], w0) });
    const grads = [
      [1, 2, 3, 4], // norm 5.48 → clipped to 1
      [0.1, -0.2, 0.05, 0.3], // norm 0.37 → unclipped
      [-1, 0.5, 0.5, -0.5],
    ];
    // Reference in float64, written out from the PyTorch AdamW + clip_grad_norm_ definitions.
    const p = [...w0];
    const m = [0, 0, 0, 0];
    const v = [0, 0, 0, 0];
    for (let t = 1; t <= 3; t++) {
      const raw = grads[t - 1];
      const norm = Math.sqrt(raw.reduce((a, b) => a + b * b, 0));
      const gt = raw.map((gi) => gi * Math.min(1, cfg.maxGradNorm / (norm + 1e-6)));
      const out = await trainer.step({ x: f32([2, 2], raw) });
      expect(Number(out.outputs['optimizer.grad_norm'].data[0])).toBeCloseTo(norm, 5);
      for (let i = 0; i < 4; i++) {
        p[i] -= cfg.lr * cfg.weightDecay * p[i];
        m[i] = cfg.beta1 * m[i] + (1 - cfg.beta1) * gt[i];
        v[i] = cfg.beta2 * v[i] + (1 - cfg.beta2) * gt[i] * gt[i];
        const mHat = m[i] / (1 - cfg.beta1 ** t);
        const vHat = v[i] / (1 - cfg.beta2 ** t);
        p[i] -= (cfg.lr * mHat) / (Math.sqrt(vHat) + cfg.eps);
      }
      const state = await trainer.state();
      for (let i = 0; i < 4; i++) {
        expect(state.w.data[i]).toBeCloseTo(p[i], 5);
        expect(state['w.m'].data[i]).toBeCloseTo(m[i], 6);
        expect(state['w.v'].data[i]).toBeCloseTo(v[i], 6);
      }
      expect(Number(state['optimizer.step'].data[0])).toBe(t + 1);
    }
  });

  it('repeat: n steps inside one run equal n single steps', async () => {
    const build = async () => {
      const g = new Graph();
      const x = g.input('x', 'float32', [3]);
      const w = g.param('w', 'float32', [3]);
      const loss = op.reduceSum(op.mul(op.mul(w, w), x), undefined, false);
      const t = await Trainer.create(
        engine,
        buildTrainStep({ graph: g, loss, params: [w], optimizer: { lr: 0.1 } }),
      );
      await t.init({ w: f32([3], [1, -2, 0.5]) });
      return t;
    };
    const [a, b] = [await build(), await build()];
    const x = f32([3], [1, 2, 3]);
    for (let i = 0; i < 3; i++) await a.step({ x });
    await b.step({ x }, 3);
    const [pa, pb] = [await a.state(), await b.state()];
    expect(Array.from(pb.w.data as Float32Array)).toEqual(Array.from(pa.w.data as Float32Array));
    expect(Number(pb['optimizer.step'].data[0])).toBe(4);
  });

  it("learning-rate schedules: values worked by hand from HF transformers' lambdas", async () => {
    // HF: LambdaLR stepped after each optimizer step, so update u uses λ(u − 1).
    // linear, W = 2, T = 10: λ(s) = s/2 for s < 2, else max(0, (10 − s)/8)
    // cosine, W = 0, T = 8:  λ(s) = ½(1 + cos(π s/8))
    // cosine with min lr 0.1, W = 2, T = 10: λ(s) = s/2 for s < 2, else ½(1 + cos(π(s − 2)/8))·0.9 + 0.1
    // constant, W = 4: λ(s) = s/4 for s < 4, else 1 (× lr 0.5)
    const g = new Graph();
    const step = g.input('step', 'float64', ['n']);
    const schedules = {
      constant: { kind: 'constant', lr: 0.5, warmupSteps: 4 },
      linear: { kind: 'linear', lr: 1, warmupSteps: 2, totalSteps: 10 },
      cosine: { kind: 'cosine', lr: 1, totalSteps: 8 },
      cosineMin: { kind: 'cosine', lr: 1, warmupSteps: 2, totalSteps: 10, minLr: 0.1 },
    } as const;
    const model = buildModel(
      g,
      Object.fromEntries(Object.entries(schedules).map(([k, s]) => [k, learningRate(step, s)])),
    );
    const updates = [1, 2, 3, 4, 5, 7, 9, 10, 11, 13];
    const { outputs } = await (await engine.load(model)).run({
      step: { dims: [updates.length], data: updates },
    });
    const expected: Record<keyof typeof schedules, number[]> = {
      //          u=1   2      3      4      5    7        9        10     11     13
      constant: [0, 0.125, 0.25, 0.375, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
      linear: [0, 0.5, 1, 0.875, 0.75, 0.5, 0.25, 0.125, 0, 0],
      cosine: [1, 0.9619398, 0.8535534, 0.6913417, 0.5, 0.1464466, 0, 0, 0, 0],
      cosineMin: [0, 0.5, 1, 0.9657458, 0.868198, 0.55, 0.231802, 0.1342542, 0.1, 0.1],
    };
    for (const [k, want] of Object.entries(expected)) {
      for (const [i, w] of want.entries())
        expect(outputs[k].data[i], `${k} u=${updates[i]}`).toBeCloseTo(w, 6);
    }
  });
});

describe('gradient accumulation', () => {
  // Per-sample loss (x·w1 → tanh → ·w2 − y)² × weight, the weight (1/6) fed per sample so every
  // micro-batch carries its share of the whole batch's normalisation, as the loss graph's are.
  const build = (accumulating: boolean) => {
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 3]);
    const y = g.input('y', 'float32', ['batch', 1]);
    const wt = g.input('wt', 'float32', ['batch', 1]);
    const w1 = g.param('w1', 'float32', [3, 4]);
    const w2 = g.param('w2', 'float32', [4, 1]);
    const err = op.sub(op.matmul(op.tanh(op.matmul(x, w1)), w2), y);
    const loss = op.reduceSum(op.mul(op.mul(err, err), wt), undefined, false);
    const spec = {
      graph: g,
      loss,
      params: [w1, w2],
      optimizer: { lr: 0.05, weightDecay: 0.1, maxGradNorm: 0.1 },
    };
    return accumulating ? buildAccumulatingTrainStep(spec) : buildTrainStep(spec);
  };
  const random = rng(3);
  const init = {
    w1: f32(
      [3, 4],
      Array.from({ length: 12 }, () => random() - 0.5),
    ),
    w2: f32([4, 1], [0.3, -0.2, 0.5, 0.1]),
  };
  const xs = Array.from({ length: 18 }, () => random() * 2 - 1);
  const ys = Array.from({ length: 6 }, () => random());
  const rows = (lo: number, hi: number) => ({
    x: f32([hi - lo, 3], xs.slice(lo * 3, hi * 3)),
    y: f32([hi - lo, 1], ys.slice(lo, hi)),
    wt: f32([hi - lo, 1], Array(hi - lo).fill(1 / 6)),
  });
  const zeros = (dims: number[]) => f32(dims, Array(dims.reduce((a, b) => a * b, 1)).fill(0));
  const state = (extra: Record<string, TensorValue>) => ({
    ...init,
    'w1.m': zeros([3, 4]),
    'w1.v': zeros([3, 4]),
    'w2.m': zeros([4, 1]),
    'w2.v': zeros([4, 1]),
    'optimizer.step': f32([], [1]),
    ...extra,
  });

  it('3 micro-batches of 2 + apply == one step on the packed 6 (clipping on the sum), twice', async () => {
    const fused = build(false) as ReturnType<typeof buildTrainStep>;
    const acc = build(true) as ReturnType<typeof buildAccumulatingTrainStep>;
    const f = await engine.load(fused.model);
    const [a, ap] = [await engine.load(acc.accumulate.model), await engine.load(acc.apply.model)];
    await f.setState('fused', state({}));
    await ap.setState('acc', state({ 'w1.grad': zeros([3, 4]), 'w2.grad': zeros([4, 1]) }));
    for (let step = 0; step < 2; step++) {
      const one = await f.run(rows(0, 6), { stateKey: 'fused', bind: fused.bind, fetch: fused.fetch });
      let loss = 0;
      for (const [lo, hi] of [
        [0, 2],
        [2, 4],
        [4, 6],
      ]) {
        const r = await a.run(rows(lo, hi), {
          stateKey: 'acc',
          bind: acc.accumulate.bind,
          fetch: acc.accumulate.fetch,
        });
        loss += Number(r.outputs.loss.data[0]);
      }
      const applied = await ap.run({}, { stateKey: 'acc', bind: acc.apply.bind, fetch: acc.apply.fetch });
      expect(loss).toBeCloseTo(Number(one.outputs.loss.data[0]), 6);
      const norm = Number(one.outputs['optimizer.grad_norm'].data[0]);
      expect(norm).toBeGreaterThan(0.1); // the clip is active: a per-micro-batch clip would differ
      expect(Number(applied.outputs['optimizer.grad_norm'].data[0])).toBeCloseTo(norm, 6);
      const [pf, pa] = [await f.getState('fused'), await a.getState('acc')];
      for (const k of ['w1', 'w2', 'w1.m', 'w2.v', 'optimizer.step'])
        for (let i = 0; i < pf[k].data.length; i++)
          expect(Math.abs(Number(pa[k].data[i]) - Number(pf[k].data[i])), `${k}[${i}]`).toBeLessThan(1e-6);
      expect(Array.from(pa['w1.grad'].data as Float32Array).every((v) => v === 0)).toBe(true);
    }
  });
});

describe('training converges', () => {
  it('2-layer MLP, 50 AdamW steps on a toy regression: loss < 0.02 (from ~0.3)', async () => {
    const random = rng(7);
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 4]);
    const y = g.input('y', 'float32', ['batch', 1]);
    const [w1, b1, w2, b2] = [
      g.param('w1', 'float32', [4, 32]),
      g.param('b1', 'float32', [32]),
      g.param('w2', 'float32', [32, 1]),
      g.param('b2', 'float32', [1]),
    ];
    const pred = nn.linear(op.tanh(nn.linear(x, w1, b1)), w2, b2);
    const loss = nn.mseLoss(pred, y);
    const step = buildTrainStep({
      graph: g,
      loss,
      params: [w1, b1, w2, b2],
      optimizer: { lr: 0.03, weightDecay: 0 },
    });
    const trainer = await Trainer.create(engine, step);
    await trainer.init({
      w1: f32([4, 32], randn(random, 128, 0.5)),
      b1: f32([32], new Float32Array(32)),
      w2: f32([32, 1], randn(random, 32, 0.2)),
      b2: f32([1], [0]),
    });
    const n = 64;
    const xs = randn(random, n * 4, 1);
    const ys = Float32Array.from(
      { length: n },
      (_, i) => 0.5 * Math.sin(xs[i * 4] + 0.5 * xs[i * 4 + 1]) + 0.3 * xs[i * 4 + 2],
    );
    const losses: number[] = [];
    for (let s = 0; s < 50; s++) {
      const out = await trainer.step({ x: f32([n, 4], xs), y: f32([n, 1], ys) });
      losses.push(Number(out.outputs.loss.data[0]));
    }
    expect(losses[0]).toBeGreaterThan(0.1);
    expect(losses[49]).toBeLessThan(0.02);
  });

  it('1-block causal attention (GQA, RoPE, RMSNorm), 50 steps learns the causal running mean: loss < 15% of start', async () => {
    const random = rng(11);
    const [d, heads, kvHeads, hd] = [8, 4, 2, 4];
    const g = new Graph();
    const x = g.input('x', 'float32', ['batch', 'seq', d]);
    const y = g.input('y', 'float32', ['batch', 'seq', d]);
    const pos = g.input('pos', 'int64', ['seq']);
    const params = {
      wq: g.param('wq', 'float32', [d, heads * hd]),
      wk: g.param('wk', 'float32', [d, kvHeads * hd]),
      wv: g.param('wv', 'float32', [d, kvHeads * hd]),
      wo: g.param('wo', 'float32', [heads * hd, d]),
      norm: g.param('norm', 'float32', [d]),
    };
    const out = attentionBlock(x, pos, params, { heads, kvHeads, hd });
    const loss = nn.mseLoss(out, y);
    const step = buildTrainStep({
      graph: g,
      loss,
      params: Object.values(params),
      optimizer: { lr: 0.05, weightDecay: 0 },
    });
    const trainer = await Trainer.create(engine, step);
    await trainer.init({
      wq: f32([d, heads * hd], randn(random, d * heads * hd, 0.3)),
      wk: f32([d, kvHeads * hd], randn(random, d * kvHeads * hd, 0.3)),
      wv: f32([d, kvHeads * hd], randn(random, d * kvHeads * hd, 0.3)),
      wo: f32([heads * hd, d], randn(random, heads * hd * d, 0.3)),
      norm: f32([d], new Float32Array(d).fill(1)),
    });
    const [b, s] = [8, 6];
    const xs = randn(random, b * s * d, 1);
    const ys = new Float32Array(b * s * d);
    for (let i = 0; i < b; i++)
      for (let t = 0; t < s; t++)
        for (let c = 0; c < d; c++) {
          let sum = 0;
          for (let u = 0; u <= t; u++) sum += xs[(i * s + u) * d + c];
          ys[(i * s + t) * d + c] = xs[(i * s + t) * d + c] + sum / (t + 1); // residual + running mean
        }
    const feeds = {
      x: f32([b, s, d], xs),
      y: f32([b, s, d], ys),
      pos: { dims: [s], data: Array.from({ length: s }, (_, i) => i) },
    };
    const losses: number[] = [];
    for (let k = 0; k < 50; k++) losses.push(Number((await trainer.step(feeds)).outputs.loss.data[0]));
    expect(losses[49]).toBeLessThan(0.15 * losses[0]);
  });
});

interface BlockParams {
  wq: Tensor;
  wk: Tensor;
  wv: Tensor;
  wo: Tensor;
  norm: Tensor;
  w1?: Tensor;
  w3?: Tensor;
  w2?: Tensor;
  norm2?: Tensor;
}
/** A decoder block in the shape the model area builds: RMSNorm → GQA attention with RoPE →
 *  residual (→ RMSNorm → SwiGLU MLP → residual when the MLP weights are given). */
function attentionBlock(
  x: Tensor,
  pos: Tensor,
  p: BlockParams,
  cfg: { heads: number; kvHeads: number; hd: number },
): Tensor {
  const [b, s] = [x.shape[0], x.shape[1]];
  const h = nn.rmsNorm(x, p.norm, 1e-5);
  const split = (t: Tensor, n: number) => op.transpose(op.reshape(t, [b, s, n, cfg.hd]), [0, 2, 1, 3]);
  const { cos, sin } = nn.ropeTables(pos, cfg.hd);
  const [c, si] = [op.cast(cos, x.dtype), op.cast(sin, x.dtype)];
  const q = nn.rope(split(op.matmul(h, p.wq), cfg.heads), c, si);
  const k = nn.rope(split(op.matmul(h, p.wk), cfg.kvHeads), c, si);
  const v = split(op.matmul(h, p.wv), cfg.kvHeads);
  const att = op.reshape(op.transpose(nn.causalAttention(q, k, v), [0, 2, 1, 3]), [b, s, cfg.heads * cfg.hd]);
  const r = op.add(x, op.matmul(att, p.wo));
  if (!p.w1 || !p.w2 || !p.w3 || !p.norm2) return r;
  const h2 = nn.rmsNorm(r, p.norm2, 1e-5);
  return op.add(r, op.matmul(op.mul(nn.silu(op.matmul(h2, p.w1)), op.matmul(h2, p.w3)), p.w2));
}

describe('whole decoder block gradients', () => {
  it('match central finite differences (float64)', async () => {
    const [d, heads, kvHeads, hd, ffn, s] = [4, 2, 1, 2, 6, 3];
    // ORT's extended fusions (x·sigmoid(x) → com.microsoft.QuickGelu) only have float kernels:
    // float64 checks run with basic graph optimization.
    const exact = await createEngine({ worker: false, graphOptimization: 'basic', threads: 2 });
    const report = await checkGradient(
      exact,
      {
        params: [
          { shape: [1, s, d], name: 'x' },
          { shape: [d, heads * hd], name: 'wq' },
          { shape: [d, kvHeads * hd], name: 'wk' },
          { shape: [d, kvHeads * hd], name: 'wv' },
          { shape: [heads * hd, d], name: 'wo' },
          { shape: [d], name: 'norm', lo: 0.5, hi: 1.5 },
          { shape: [d, ffn], name: 'w1' },
          { shape: [d, ffn], name: 'w3' },
          { shape: [ffn, d], name: 'w2' },
          { shape: [d], name: 'norm2', lo: 0.5, hi: 1.5 },
        ],
        build: (g, [x, wq, wk, wv, wo, norm, w1, w3, w2, norm2]) =>
          attentionBlock(
            x,
            g.constant('int64', [s], [0, 1, 2]),
            { wq, wk, wv, wo, norm, w1, w3, w2, norm2 },
            { heads, kvHeads, hd },
          ),
      },
      1,
      'float64',
    );
    await exact.close();
    expect(report.dtype).toBe('float64');
    expect(report.checked).toBe(12 + 16 + 8 + 8 + 16 + 4 + 24 + 24 + 24 + 4);
    expect(report.worst, `max error ${report.maxError}`).toBeLessThanOrEqual(1);
  });
});

describe('runtime', () => {
  it('runs in a worker: main-thread timers keep firing during a long run (and not in-thread)', async () => {
    const g = new Graph();
    const x0 = g.input('x', 'float32', [256, 256]);
    const w = g.input('w', 'float32', [256, 256]);
    const { carried } = loop({
      maxTrip: g.input('n', 'int64', []),
      carried: [x0],
      body: (_i, [x]) => ({ carried: [op.tanh(op.matmul(x, w))] }),
    });
    const model = buildModel(g, { y: carried[0] });
    expect(validateModel(model.bytes)).toEqual([]);
    const random = rng(3);
    const feeds = {
      x: f32([256, 256], randn(random, 65536, 1)),
      w: f32([256, 256], randn(random, 65536, 0.05)),
      n: { dims: [], data: new BigInt64Array([2400n]) },
    };
    const measure = async (e: Engine) => {
      const compiled = await e.load(model);
      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      const started = performance.now();
      await compiled.run(feeds);
      const wall = performance.now() - started;
      clearInterval(timer);
      return { ticks, wall };
    };
    // 2400 chained 256×256 matmuls: ~0.5 s on a quiet 2-core box, long enough that a blocked event loop would show.
    const inWorker = await measure(engine);
    expect(inWorker.wall).toBeGreaterThan(200);
    expect(inWorker.ticks).toBeGreaterThan(inWorker.wall / 5 / 4);
    const direct = await createEngine({ worker: false, threads: 2 });
    const inThread = await measure(direct);
    await direct.close();
    expect(inThread.ticks).toBeLessThanOrEqual(1);
  });

  it('caches sessions by model hash and serves every batch size from one session', async () => {
    const build = () => {
      const g = new Graph();
      const x = g.input('x', 'float32', ['batch', 3]);
      const w = g.initializer('w', 'float32', [3, 2], [1, 0, 0, 1, 1, 1]); // frozen weights
      const b = g.param('b', 'float32', [2]);
      return buildModel(g, { y: op.add(op.matmul(x, w), b) });
    };
    const [m1, m2] = [build(), build()];
    expect(m1.hash).toBe(m2.hash);
    const before = engine.cachedSessions;
    const [c1, c2] = [await engine.load(m1), await engine.load(m2)];
    expect(c1).toBe(c2);
    expect(engine.cachedSessions).toBe(before + 1);
    for (const batch of [1, 5]) {
      const xs = Float32Array.from({ length: batch * 3 }, (_, i) => i);
      const { outputs } = await c1.run({ x: { dims: [batch, 3], data: xs }, b: f32([2], [10, 20]) });
      expect(outputs.y.dims).toEqual([batch, 2]);
      expect(Array.from(outputs.y.data as Float32Array)).toEqual(
        Array.from({ length: batch }, (_, r) => [
          xs[r * 3] + xs[r * 3 + 2] + 10,
          xs[r * 3 + 1] + xs[r * 3 + 2] + 20,
        ]).flat(),
      );
    }
    await expect(c1.run({ x: f32([2, 4], new Float32Array(8)), b: f32([2], [0, 0]) })).rejects.toThrow(
      /engine\.feed: x: dim 1 is 4, expected 3/,
    );
  });

  it('baseStateKey: two states share the weights of a third', async () => {
    const g = new Graph();
    const w = g.input('w', 'float32', [2]);
    const acc = g.input('acc', 'float32', [2]);
    const model = buildModel(g, { acc_next: op.add(acc, w) });
    const c = await engine.load(model);
    await c.setState('weights', { w: f32([2], [1, 10]) });
    await c.setState('gen-a', { acc: f32([2], [0, 0]) });
    await c.setState('gen-b', { acc: f32([2], [5, 5]) });
    const run = (key: string) =>
      c.run({}, { stateKey: key, baseStateKey: 'weights', bind: { acc_next: 'acc' } });
    await run('gen-a');
    await run('gen-a');
    await run('gen-b');
    expect(Array.from((await c.getState('gen-a')).acc.data as Float32Array)).toEqual([2, 20]);
    expect(Array.from((await c.getState('gen-b')).acc.data as Float32Array)).toEqual([6, 15]);
    expect(Object.keys(await c.getState('gen-a'))).toEqual(['acc']);
  });

  it('Loop with a growing carried tensor and scan outputs (the generation pattern)', async () => {
    const g = new Graph();
    const start = g.input('start', 'float32', ['batch', 1]);
    const steps = g.input('steps', 'int64', []);
    const { carried, scans } = loop({
      maxTrip: steps,
      carried: [start, start],
      carriedShapes: [
        ['batch', 1],
        ['batch', 'len'],
      ],
      body: (_i, [last, history]) => {
        const next = op.add(op.mul(last, 2), 1);
        return { carried: [next, op.concat([history, next], 1)], scans: [next] };
      },
    });
    const model = buildModel(g, { last: carried[0], history: carried[1], each: scans[0] });
    expect(validateModel(model.bytes)).toEqual([]);
    const { outputs } = await (await engine.load(model)).run({
      start: f32([2, 1], [0, 1]),
      steps: { dims: [], data: [3] },
    });
    expect(Array.from(outputs.history.data as Float32Array)).toEqual([0, 1, 3, 7, 1, 3, 7, 15]);
    expect(outputs.each.dims).toEqual([3, 2, 1]);
  });

  it('validateModel reports a node reading an undefined tensor', () => {
    const g = new Graph();
    const x = g.input('x', 'float32', [2]);
    const model = buildModel(g, { y: op.exp(x) });
    const decoded = ModelProto.toObject(ModelProto.decode(model.bytes)) as {
      graph: { node: { input: string[] }[] };
    };
    decoded.graph.node[0].input[0] = 'nowhere';
    const broken = ModelProto.encode(ModelProto.fromObject(decoded)).finish();
    expect(validateModel(model.bytes)).toEqual([]);
    expect(validateModel(broken).join('\n')).toMatch(/input nowhere is not defined before use/);
  });
});

describe('generation as an ONNX Loop with the KV cache as loop-carried state', () => {
  const [V, d, heads, kvHeads, hd] = [11, 8, 2, 1, 4];
  const random = rng(5);
  const weights = {
    emb: randn(random, V * d, 1),
    wq: randn(random, d * heads * hd, 0.5),
    wk: randn(random, d * kvHeads * hd, 0.5),
    wv: randn(random, d * kvHeads * hd, 0.5),
    wo: randn(random, heads * hd * d, 0.5),
    wout: randn(random, d * V, 0.5),
  };
  /** Frozen weights as initializers, read from inside the Loop body (outer-scope capture). */
  const frozen = (g: Graph) => ({
    emb: g.initializer('emb', 'float32', [V, d], weights.emb),
    wq: g.initializer('wq', 'float32', [d, heads * hd], weights.wq),
    wk: g.initializer('wk', 'float32', [d, kvHeads * hd], weights.wk),
    wv: g.initializer('wv', 'float32', [d, kvHeads * hd], weights.wv),
    wo: g.initializer('wo', 'float32', [heads * hd, d], weights.wo),
    wout: g.initializer('wout', 'float32', [d, V], weights.wout),
  });
  /** One decoder layer over `tokens` [b, s] at `positions` [s], after cached keys/values. */
  function layer(
    w: ReturnType<typeof frozen>,
    tokens: Tensor,
    positions: Tensor,
    cache?: { k: Tensor; v: Tensor },
  ) {
    const x = op.gather(w.emb, tokens, 0);
    const [b, s] = [op.shapeOf(tokens, 0, 1), op.shapeOf(tokens, 1, 2)];
    const heads4 = (t: Tensor, n: number) => op.transpose(op.reshape(t, [b, s, n, hd]), [0, 2, 1, 3]);
    const { cos, sin } = nn.ropeTables(positions, hd);
    const q = nn.rope(heads4(op.matmul(x, w.wq), heads), cos, sin);
    let k = nn.rope(heads4(op.matmul(x, w.wk), kvHeads), cos, sin);
    let v = heads4(op.matmul(x, w.wv), kvHeads);
    if (cache) [k, v] = [op.concat([cache.k, k], 2), op.concat([cache.v, v], 2)];
    const att = op.reshape(op.transpose(nn.causalAttention(q, k, v), [0, 2, 1, 3]), [b, s, heads * hd]);
    const logits = op.matmul(op.add(x, op.matmul(att, w.wo)), w.wout);
    return { logits, k, v };
  }

  it('greedy Loop decoding equals argmax of the full causal forward at every position', async () => {
    const steps = 6;
    const g = new Graph();
    const w = frozen(g);
    const start = g.input('start', 'int64', ['batch', 1]);
    const empty = op.fill(g, [op.shapeOf(start, 0, 1), kvHeads, 0, hd], 0, 'float32');
    const { scans } = loop({
      maxTrip: steps,
      carried: [start, empty, empty, g.constant('int64', [1], [0])],
      carriedShapes: [['batch', 1], ['batch', kvHeads, 'past', hd], ['batch', kvHeads, 'past', hd], [1]],
      body: (_i, [token, kCache, vCache, pos]) => {
        const out = layer(w, token, pos, { k: kCache, v: vCache });
        const next = op.reshape(op.argMax(out.logits, -1, false), [op.shapeOf(token, 0, 1), 1]);
        return { carried: [next, out.k, out.v, op.add(pos, 1)], scans: [op.squeeze(next, [1])] };
      },
    });
    const genModel = buildModel(g, { tokens: scans[0] });
    expect(validateModel(genModel.bytes)).toEqual([]);
    const batch = 3;
    const startIds = [1, 4, 7];
    const { outputs } = await (await engine.load(genModel)).run({
      start: { dims: [batch, 1], data: startIds },
    });
    expect(outputs.tokens.dims).toEqual([steps, batch]);
    const generated = Array.from(outputs.tokens.data as BigInt64Array, Number);

    // Reference: the same layer over the whole sequence at once, no cache.
    const f = new Graph();
    const tokens = f.input('tokens', 'int64', ['batch', 'seq']);
    const positions = f.input('positions', 'int64', ['seq']);
    const full = layer(frozen(f), tokens, positions);
    const refModel = buildModel(f, { next: op.argMax(full.logits, -1, false) });
    const seq = startIds.map((s0, r) => [
      s0,
      ...Array.from({ length: steps }, (_, t) => generated[t * batch + r]),
    ]);
    const ref = await (await engine.load(refModel)).run({
      tokens: { dims: [batch, steps], data: seq.flatMap((row) => row.slice(0, steps)) },
      positions: { dims: [steps], data: Array.from({ length: steps }, (_, i) => i) },
    });
    const next = Array.from(ref.outputs.next.data as BigInt64Array, Number);
    for (let r = 0; r < batch; r++)
      for (let t = 0; t < steps; t++) expect(next[r * steps + t]).toBe(seq[r][t + 1]);
  });
});

describe('randomness and sampling in the graph', () => {
  it('randomUniform: in (0, 1), uniform moments, reproducible per seed, different across seeds and streams', async () => {
    const g = new Graph();
    const seed = g.input('seed', 'int64', []);
    const n = g.input('n', 'float32', ['rows', 100]);
    const u = op.randomUniform(g, ['rows', 100], seed);
    const v = op.randomUniform(g, ['rows', 100], seed, { stream: 1 });
    const c = await engine.load(buildModel(g, { u, v, touch: op.reduceSum(n) }));
    const feeds = (s: number) => ({
      seed: { dims: [], data: [s] },
      n: f32([100, 100], new Float32Array(10000)),
    });
    const [a, b, a2] = [
      (await c.run(feeds(1))).outputs,
      (await c.run(feeds(2))).outputs,
      (await c.run(feeds(1))).outputs,
    ];
    const xs = Array.from(a.u.data as Float32Array);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
    expect(Math.min(...xs)).toBeGreaterThan(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.015); // 5 standard errors for n = 10000
    expect(Math.abs(variance - 1 / 12)).toBeLessThan(0.004);
    expect(Array.from(a2.u.data as Float32Array)).toEqual(xs);
    const same = (p: ArrayLike<number>, q: ArrayLike<number>) =>
      Array.from(p).filter((x, i) => x === q[i]).length;
    expect(same(a.u.data as Float32Array, b.u.data as Float32Array)).toBeLessThan(10);
    expect(same(a.u.data as Float32Array, a.v.data as Float32Array)).toBeLessThan(10);
  });

  it('sampleTokens: frequencies follow softmax(logits / T); top-k 1 and tiny top-p are greedy', async () => {
    const rows = 4000;
    const probs = [0.1, 0.2, 0.3, 0.4];
    const g = new Graph();
    const logits = g.input('logits', 'float32', ['batch', 4]);
    const seed = g.input('seed', 'int64', []);
    const u = op.randomUniform(g, ['batch', 4], seed);
    const model = buildModel(g, {
      t1: nn.sampleTokens(logits, { uniform: u }),
      t2: nn.sampleTokens(logits, { uniform: u, temperature: 0.5 }),
      k1: nn.sampleTokens(logits, { uniform: u, topK: 1 }),
      k2: nn.sampleTokens(logits, { uniform: u, topK: 2 }),
      p0: nn.sampleTokens(logits, { uniform: u, topP: 1e-6 }),
      p5: nn.sampleTokens(logits, { uniform: u, topP: 0.5 }),
    });
    const data = new Float32Array(rows * 4);
    for (let r = 0; r < rows; r++) for (let j = 0; j < 4; j++) data[r * 4 + j] = Math.log(probs[j]) + 3;
    const { outputs } = await (await engine.load(model)).run({
      logits: { dims: [rows, 4], data },
      seed: { dims: [], data: [42] },
    });
    const freq = (name: string) => {
      const counts = [0, 0, 0, 0];
      for (const t of outputs[name].data as BigInt64Array) counts[Number(t)] += 1;
      return counts.map((c) => c / rows);
    };
    for (const [j, f] of freq('t1').entries()) expect(Math.abs(f - probs[j])).toBeLessThan(0.03);
    const sq = probs.map((p) => p * p);
    const z = sq.reduce((a, b) => a + b);
    for (const [j, f] of freq('t2').entries()) expect(Math.abs(f - sq[j] / z)).toBeLessThan(0.03);
    expect(freq('k1')).toEqual([0, 0, 0, 1]);
    expect(freq('p0')).toEqual([0, 0, 0, 1]);
    const k2 = freq('k2');
    expect(k2[0] + k2[1]).toBe(0);
    expect(Math.abs(k2[3] - 4 / 7)).toBeLessThan(0.03);
    const p5 = freq('p5'); // 0.4 < 0.5 → keep {0.4, 0.3}
    expect(p5[0] + p5[1]).toBe(0);
    expect(Math.abs(p5[3] - 4 / 7)).toBeLessThan(0.03);
  });
});

describe('device selection', () => {
  it("'cuda' fails with a message naming the missing provider library", () => {
    // The project's onnxruntime-node (1.30 from npm) ships no CUDA provider; name it explicitly
    // so a local `npm run setup:cuda` copy (gpu-runner/.ort-cuda) does not change the answer.
    const ortPath = 'onnxruntime-node';
    expect(() => selectDevice({ device: 'cuda', ortPath })).toThrow(
      /libonnxruntime_providers_cuda\.so.*npm run setup:cuda/,
    );
    const auto = selectDevice({ device: 'auto', ortPath });
    expect(['cpu', 'webgpu']).toContain(auto.device);
    expect(auto.notes.join('\n')).toMatch(/libonnxruntime_providers_(shared|cuda)\.so/);
  });

  it('names the CUDA libraries the provider links against when they are absent', () => {
    // A provider file carrying the DT_NEEDED names of the real CUDA 13 build; the loader search
    // is real (LD_LIBRARY_PATH, ldconfig cache), this machine has no CUDA libraries.
    const dir = mkdtempSync(path.join(tmpdir(), 'cgrpo-ort-'));
    const bin = path.join(dir, 'bin', 'napi-v6', process.platform, process.arch);
    mkdirSync(bin, { recursive: true });
    writeFileSync(
      path.join(dir, 'package.json'),
      JSON.stringify({ name: 'onnxruntime-node', version: '1.29.0' }),
    );
    writeFileSync(path.join(bin, 'libonnxruntime_providers_shared.so'), '\x7fELF');
    writeFileSync(
      path.join(bin, 'libonnxruntime_providers_cuda.so'),
      '\x7fELF\0libcublasLt.so.13\0libcudart.so.13\0libcufft.so.12\0',
    );
    const probe = probeCuda({ ortPath: dir });
    expect(probe.ok).toBe(false);
    // (libcudart may exist on a machine with the bare CUDA toolkit; cuBLAS and cuDNN do not here.)
    expect(probe.missing).toEqual(expect.arrayContaining(['libcublasLt.so.13', 'libcudnn.so.9']));
    expect([...probe.missing, ...Object.keys(probe.found)]).toEqual(
      expect.arrayContaining(['libcudart.so.13', 'libcufft.so.12']),
    );
    expect(probe.message).toMatch(/libcublasLt\.so\.13.*not found.*LD_LIBRARY_PATH/);
  });

  it('preloads libraries by absolute path so the provider finds them by soname (no LD_LIBRARY_PATH)', () => {
    const maps = () => readFileSync('/proc/self/maps', 'utf8');
    const cache = librarySearchPath().cache;
    const candidate = ['libexpat.so.1', 'libbz2.so.1.0', 'liblzma.so.5', 'libicudata.so.72']
      .map((name) => cache.get(name))
      .find((p): p is string => p !== undefined && !maps().includes(p));
    expect(preload(['/nonexistent/libcublas.so.13'])[0]).toMatch(/libcublas\.so\.13/);
    if (candidate) {
      expect(preload([candidate])).toEqual([]);
      expect(maps()).toContain(candidate);
    }
  });

  it("'webgpu' needs a Vulkan loader", () => {
    if (hasVulkanLoader()) expect(selectDevice({ device: 'webgpu' }).device).toBe('webgpu');
    else expect(() => selectDevice({ device: 'webgpu' })).toThrow(/libvulkan\.so\.1 not found/);
  });
});
