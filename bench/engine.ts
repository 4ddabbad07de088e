// npm run bench:engine [-- --device cpu|cuda|auto --layers 2 --batch 4 --seq 128 --steps 10]
// In one run, on the same shapes and execution provider:
//  (1) the bare MatMul FLOP rate of onnxruntime-node on the decoder's GEMM shapes;
//  (2) forward + backward + AdamW of a decoder stack (RMSNorm, GQA attention with RoPE, SwiGLU MLP),
//      counted as 3× the forward matmul FLOPs;
// and prints `engine efficiency: NN%` = (2)/(1), peak RSS vs weights + activations + optimizer state.
import os from 'node:os';
import {
  add,
  buildModel,
  buildTrainStep,
  causalAttention,
  createEngine,
  type DeviceRequest,
  Graph,
  matmul,
  mseLoss,
  mul,
  reshape,
  rmsNorm,
  rope,
  ropeTables,
  silu,
  type Tensor,
  type TensorValue,
  Trainer,
  transpose,
} from '../gpu-runner/src/engine/index';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const device = arg('device', 'cpu') as DeviceRequest;
const [layers, batch, seq, steps] = ['layers', 'batch', 'seq', 'steps'].map((k, i) =>
  Number(arg(k, ['2', '4', '128', '8'][i])),
);
const cfg = { d: Number(arg('d', '512')), heads: 8, kvHeads: 4, hd: 64, ffn: Number(arg('ffn', '1408')) };
const T = batch * seq;

function randn(n: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (Math.random() * 2 - 1) * scale * 1.7;
  return out;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// ---- the decoder stack ----
const g = new Graph('bench');
const x = g.input('x', 'float32', ['batch', 'seq', cfg.d]);
const y = g.input('y', 'float32', ['batch', 'seq', cfg.d]);
const pos = g.input('pos', 'int64', ['seq']);
const params: Tensor[] = [];
const shapes: Record<string, number[]> = {};
const param = (name: string, dims: number[]) => {
  shapes[name] = dims;
  const t = g.param(name, 'float32', dims);
  params.push(t);
  return t;
};
const { cos, sin } = ropeTables(pos, cfg.hd);
let h = x;
for (let l = 0; l < layers; l++) {
  const p = (n: string, dims: number[]) => param(`l${l}.${n}`, dims);
  const [wq, wk, wv, wo] = [
    p('wq', [cfg.d, cfg.heads * cfg.hd]),
    p('wk', [cfg.d, cfg.kvHeads * cfg.hd]),
    p('wv', [cfg.d, cfg.kvHeads * cfg.hd]),
    p('wo', [cfg.heads * cfg.hd, cfg.d]),
  ];
  const [n1, n2] = [p('norm1', [cfg.d]), p('norm2', [cfg.d])];
  const [w1, w3, w2] = [p('w1', [cfg.d, cfg.ffn]), p('w3', [cfg.d, cfg.ffn]), p('w2', [cfg.ffn, cfg.d])];
  const a = rmsNorm(h, n1, 1e-6);
  const split = (t: Tensor, n: number) => transpose(reshape(t, ['batch', 'seq', n, cfg.hd]), [0, 2, 1, 3]);
  const q = rope(split(matmul(a, wq), cfg.heads), cos, sin);
  const k = rope(split(matmul(a, wk), cfg.kvHeads), cos, sin);
  const v = split(matmul(a, wv), cfg.kvHeads);
  const att = reshape(transpose(causalAttention(q, k, v), [0, 2, 1, 3]), [
    'batch',
    'seq',
    cfg.heads * cfg.hd,
  ]);
  h = add(h, matmul(att, wo));
  const m = rmsNorm(h, n2, 1e-6);
  h = add(h, matmul(mul(silu(matmul(m, w1)), matmul(m, w3)), w2));
}
const loss = mseLoss(h, y);
const train = buildTrainStep({
  graph: g,
  loss,
  params,
  optimizer: { lr: 1e-4, weightDecay: 0.01, maxGradNorm: 1 },
});

// Forward matmul FLOPs (projections + attention scores and mixing), ×3 for forward+backward.
const proj =
  2 * T * cfg.d * (2 * cfg.heads * cfg.hd + 2 * cfg.kvHeads * cfg.hd) + 2 * T * cfg.d * cfg.ffn * 3;
const attn = 2 * 2 * batch * cfg.heads * seq * seq * cfg.hd;
const forwardFlops = layers * (proj + attn);
const trainFlops = 3 * forwardFlops;

// Theoretical memory: weights, grads, Adam moments (fp32) and every forward intermediate.
const weightCount = Object.values(shapes).reduce((s, d) => s + d.reduce((a, b) => a * b, 1), 0);
const bind = (d: number | string) =>
  d === 'batch' ? batch : d === 'seq' ? seq : typeof d === 'number' ? d : 1;
let activationCount = 0;
let intermediateCount = 0;
for (const n of g.nodes)
  for (const o of n.outputs) {
    const size = o.dtype === 'float32' ? o.shape.reduce<number>((a, d) => a * bind(d), 1) : 0;
    intermediateCount += size;
    if (n.id <= (loss.producer?.id ?? 0)) activationCount += size;
  }
const mib = (bytes: number) => bytes / 2 ** 20;
const theory = {
  weights: mib(weightCount * 4),
  optimizer: mib(weightCount * 4 * 3),
  activations: mib(activationCount * 4),
  /** Every float tensor of forward, backward and update, as if nothing were freed or reused. */
  noReuse: mib(intermediateCount * 4),
};

// ---- bare MatMul graph on the same GEMM shapes ----
const mg = new Graph('matmul');
const mx = mg.input('x', 'float32', [T, cfg.d]);
const mh = mg.input('h', 'float32', [T, cfg.ffn]);
const gemms: Tensor[] = [];
for (let l = 0; l < layers; l++) {
  for (const n of [cfg.heads * cfg.hd, cfg.kvHeads * cfg.hd, cfg.kvHeads * cfg.hd])
    gemms.push(matmul(mx, mg.input(`w${l}_${n}_${gemms.length}`, 'float32', [cfg.d, n])));
  gemms.push(matmul(mx, mg.input(`wo${l}`, 'float32', [cfg.d, cfg.d])));
  gemms.push(
    matmul(mx, mg.input(`w1${l}`, 'float32', [cfg.d, cfg.ffn])),
    matmul(mx, mg.input(`w3${l}`, 'float32', [cfg.d, cfg.ffn])),
  );
  gemms.push(matmul(mh, mg.input(`w2${l}`, 'float32', [cfg.ffn, cfg.d])));
}
const matmulModel = buildModel(mg, Object.fromEntries(gemms.map((t, i) => [`out${i}`, t])));

async function main() {
  const baseline = process.memoryUsage().rss;
  const engine = await createEngine({ device });
  console.log(`device: ${engine.device}${engine.notes.length ? ` (${engine.notes.join('; ')})` : ''}`);
  console.log(
    `machine: ${os.cpus().length}-core ${os.arch()} ${os.cpus()[0]?.model ?? ''}, Node ${process.version}`,
  );
  console.log(
    `shapes: layers=${layers} batch=${batch} seq=${seq} d=${cfg.d} heads=${cfg.heads}/${cfg.kvHeads} hd=${cfg.hd} ffn=${cfg.ffn} params=${(weightCount / 1e6).toFixed(2)}M`,
  );

  // (1) bare MatMul
  const mm = await engine.load(matmulModel);
  const feeds: Record<string, TensorValue> = {};
  for (const spec of matmulModel.inputs) {
    const dims = spec.shape as number[];
    feeds[spec.name] = {
      dims,
      data: randn(
        dims.reduce((a, b) => a * b, 1),
        0.05,
      ),
    };
  }
  const mmFlops = gemms.reduce(
    (s, t) =>
      s + 2 * (t.shape[0] as number) * (t.shape[1] as number) * (t.producer!.inputs[0]!.shape[1] as number),
    0,
  );

  // (2) forward + backward + AdamW
  const trainer = await Trainer.create(engine, train);
  const init: Record<string, TensorValue> = {};
  for (const [name, dims] of Object.entries(shapes)) {
    const n = dims.reduce((a, b) => a * b, 1);
    init[name] = {
      dims,
      data: name.includes('norm') ? new Float32Array(n).fill(1) : randn(n, 1 / Math.sqrt(dims[0])),
    };
  }
  await trainer.init(init);
  const batchFeeds = {
    x: { dims: [batch, seq, cfg.d], data: randn(T * cfg.d, 1) },
    y: { dims: [batch, seq, cfg.d], data: randn(T * cfg.d, 1) },
    pos: { dims: [seq], data: Array.from({ length: seq }, (_, i) => i) },
  };
  // Interleaved, so both see the same machine load (CI boxes are shared); the efficiency is the
  // median of per-iteration ratios.
  const mmTimes: number[] = [];
  const stepTimes: number[] = [];
  const wallTimes: number[] = [];
  const ratios: number[] = [];
  let lastLoss = 0;
  for (let i = 0; i < steps + 2; i++) {
    const mmMs = (await mm.run(feeds, { fetch: ['out0'] })).ms;
    const t0 = performance.now();
    const { ms, outputs } = await trainer.step(batchFeeds);
    const wall = performance.now() - t0;
    lastLoss = Number(outputs.loss.data[0]);
    if (i >= 2) {
      mmTimes.push(mmMs);
      stepTimes.push(ms);
      wallTimes.push(wall);
      ratios.push(trainFlops / ms / (mmFlops / mmMs));
    }
  }
  const mmRate = mmFlops / (median(mmTimes) / 1e3);
  const trainRate = trainFlops / (median(stepTimes) / 1e3);
  // Bytes crossing the runtime boundary per step (batch in, fetched scalars out) vs what would
  // cross if params, grads' moments and the step counter were fed and fetched every step.
  const feedBytes = T * cfg.d * 4 * 2 + seq * 8;
  const fetchBytes = train.fetch.length * 4;
  const stateBytes = weightCount * 4 * 3 + 4;
  const peak = process.resourceUsage().maxRSS * 1024;
  await engine.close();

  const gf = (r: number) => (r / 1e9).toFixed(1);
  console.log(
    `(1) bare MatMul: ${gf(mmRate)} GFLOP/s (${(mmFlops / 1e9).toFixed(2)} GFLOP in ${median(mmTimes).toFixed(1)} ms)`,
  );
  console.log(
    `(2) train step (fwd+bwd+AdamW): ${median(stepTimes).toFixed(1)} ms in onnxruntime, ${median(wallTimes).toFixed(1)} ms wall incl. worker hop; ${(trainFlops / 1e9).toFixed(2)} GFLOP → ${gf(trainRate)} GFLOP/s (loss ${lastLoss.toFixed(4)})`,
  );
  console.log(
    `traffic per step: ${(feedBytes / 2 ** 20).toFixed(2)} MiB in + ${fetchBytes} B out; params/moments (${(stateBytes / 2 ** 20).toFixed(1)} MiB, ×2 directions) stay beside the session`,
  );
  const sorted = [...ratios].sort((a, b) => a - b);
  console.log(
    `engine efficiency: ${Math.round(100 * median(ratios))}% (median of ${ratios.length} interleaved pairs; range ${Math.round(100 * sorted[0])}–${Math.round(100 * sorted[sorted.length - 1])}%)`,
  );
  const total = theory.weights + theory.optimizer + theory.activations;
  console.log(
    `memory: peak RSS ${mib(peak).toFixed(0)} MiB (process baseline ${mib(baseline).toFixed(0)} MiB) vs theoretical ${total.toFixed(0)} MiB = weights ${theory.weights.toFixed(0)} + grads/m/v ${theory.optimizer.toFixed(0)} + activations ${theory.activations.toFixed(0)} (all forward intermediates, fp32); every fwd+bwd+update tensor without reuse: ${theory.noReuse.toFixed(0)} MiB`,
  );
}

await main();
