// npm run bench:memory [-- --shapes 0.5b,1.5b --layers N --batch 2 --seq 128 --precision checkpoint|float32]
//
// Peak memory of loading a real-size checkpoint and of one LoRA train step, measured in a fresh
// child process per shape (peak RSS = VmHWM of that process, worker thread included).
// Checkpoints are Qwen2.5-0.5B / 1.5B shaped with random BF16 weights
// (gpu-runner/scripts/random-checkpoint.ts), written once to the temp folder. `--layers` cuts
// the layer count (the ratio to the checkpoint's bytes is what is reported, and it is printed
// with the layer count used). `--precision float32` widens the frozen weights at load (the old
// path); the default keeps them in the checkpoint's precision (fp16). Prints, per shape:
//   load peak RSS: N.NN× weight bytes (0.5B shape)
//   train step peak RSS: X GiB vs theory Y GiB (Z×)
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { type CheckpointShape, writeRandomCheckpoint } from '../gpu-runner/scripts/random-checkpoint';
import * as op from '../gpu-runner/src/engine/index';
import { createEngine } from '../gpu-runner/src/engine/index';
import { LORA_TARGETS } from '../gpu-runner/src/model/decoder';
import { CausalLM, type LossHook } from '../gpu-runner/src/model/index';
import type { WeightPrecision } from '../gpu-runner/src/model/weights';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const GiB = 2 ** 30;
/** this process's peak resident memory: VmHWM of its own address space (getrusage's maxrss would
 *  start from the parent's size at fork, Linux keeps it across exec) */
const maxRss = () => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
};
const RANK = 16;

interface ChildResult {
  baseline: number;
  loadPeak: number;
  trainPeak: number;
  forwardMs: number;
  config: {
    hiddenSize: number;
    intermediateSize: number;
    numLayers: number;
    vocabSize: number;
    numHeads: number;
    numKvHeads: number;
    headDim: number;
  };
}

async function child(dir: string, batch: number, seq: number, precision: WeightPrecision): Promise<void> {
  const engine = await createEngine({ threads: 2 });
  const baseline = maxRss();
  const model = await CausalLM.load(dir, {
    engine,
    weightPrecision: precision,
    lora: { rank: RANK, alpha: 32, dropout: 0, targets: [...LORA_TARGETS] },
  });
  const loadPeak = maxRss();
  // one forward of 16 tokens (the Cast of every fp16 weight included), second run timed
  const probe = Array.from({ length: 16 }, (_, i) => 100 + i * 7);
  await model.fullLogits(probe);
  const f0 = performance.now();
  await model.fullLogits(probe);
  const forwardMs = performance.now() - f0;
  const nll: LossHook = ({ logp, mask }) => ({
    loss: op.div(
      op.neg(op.reduceSum(op.mul(logp, mask), undefined, false)),
      op.reduceSum(mask, undefined, false),
    ),
  });
  const trainer = await model.trainer({ mode: 'lora', loss: nll, optimizer: { lr: 1e-5 } });
  const tokens = Array.from({ length: seq + 1 }, (_, i) => 100 + ((i * 37) % 2000));
  await trainer.step(Array.from({ length: batch }, () => ({ tokens, start: 1 })));
  const trainPeak = maxRss();
  const c = model.config;
  const result: ChildResult = {
    baseline,
    loadPeak,
    trainPeak,
    forwardMs,
    config: {
      hiddenSize: c.hiddenSize,
      intermediateSize: c.intermediateSize,
      numLayers: c.numLayers,
      vocabSize: c.vocabSize,
      numHeads: c.numHeads,
      numKvHeads: c.numKvHeads,
      headDim: c.headDim,
    },
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
  await model.close();
  await engine.close();
}

/** What a LoRA step must hold at least: the frozen weights (`bytesPerWeight`: 2 in fp16, 4 in
 *  f32), the adapter with grads and AdamW
 *  moments, and per layer the activations kept for backward (x, q, k, v, attention probabilities,
 *  attention out, gate/up/act, norms) plus the logits with their softmax. */
function theory(r: ChildResult, params: number, bytesPerWeight: number, batch: number, seq: number): number {
  const c = r.config;
  const T = batch * seq;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const lora =
    c.numLayers *
    RANK *
    (c.hiddenSize * 4 + q + kv * 2 + c.intermediateSize * 3 + c.hiddenSize * 2 + c.intermediateSize);
  const perLayer =
    T * (4 * c.hiddenSize + q + 2 * kv + q + 3 * c.intermediateSize) + batch * c.numHeads * seq * seq;
  return bytesPerWeight * params + 4 * (4 * lora + c.numLayers * perLayer + 2 * T * c.vocabSize);
}

if (process.argv[2] === '--child') {
  await child(
    process.argv[3],
    Number(process.argv[4]),
    Number(process.argv[5]),
    process.argv[6] as WeightPrecision,
  );
} else {
  const shapes = arg('shapes', '0.5b,1.5b').split(',') as CheckpointShape[];
  const layers = arg('layers', '');
  const batch = Number(arg('batch', '2'));
  const seq = Number(arg('seq', '128'));
  const precision = arg('precision', 'checkpoint') as WeightPrecision;
  for (const shape of shapes) {
    const n = layers ? Number(layers) : undefined;
    const dir = join(os.tmpdir(), `cgrpo-bench-memory-${shape}-${n ?? 'full'}l`);
    const t0 = performance.now();
    const { weightBytes, params } = writeRandomCheckpoint(dir, shape, { layers: n });
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', import.meta.filename, '--child', dir, String(batch), String(seq), precision],
      {
        encoding: 'utf8',
        env: { ...process.env, OMP_NUM_THREADS: '2' },
      },
    );
    const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
    if (r.status !== 0 || !line) {
      console.error(`${shape}: child failed (${r.status}): ${r.stderr.slice(-2000)}`);
      process.exitCode = 1;
      continue;
    }
    const res = JSON.parse(line.slice(7)) as ChildResult;
    const th = theory(res, params, precision === 'float32' ? 4 : 2, batch, seq);
    const label = `${shape.toUpperCase()} shape${n ? `, ${n} of its layers` : ''}`;
    console.log(
      `${shape}: ${(weightBytes / GiB).toFixed(2)} GiB of BF16 weights (${(params / 1e6).toFixed(0)}M params) held in ${precision === 'float32' ? 'float32' : 'fp16'}, process baseline ${(res.baseline / GiB).toFixed(2)} GiB, 16-token forward ${res.forwardMs.toFixed(0)} ms, ${((performance.now() - t0) / 1000).toFixed(0)} s`,
    );
    console.log(`load peak RSS: ${(res.loadPeak / weightBytes).toFixed(2)}× weight bytes (${label})`);
    console.log(
      `train step peak RSS: ${(res.trainPeak / GiB).toFixed(2)} GiB vs theory ${(th / GiB).toFixed(2)} GiB (${(res.trainPeak / th).toFixed(2)}×; LoRA r=${RANK} on all 7 projections, batch ${batch}×${seq})`,
    );
  }
}
