// npm run gpu:check [-- --out FILE --skip-python]
//
// One command for a Linux machine with an NVIDIA GPU, CUDA 13 user-space libraries (e.g. the
// nvidia-* pip wheels of a PyTorch install) and no network. In order, each part timed and
// recorded even when an earlier one failed:
//   1. parity: logits of each tiny model on CUDA vs CPU (max |Δ|, pass below 1e-3)
//   2. engine: `bench/engine.ts --device cuda` and `bench/engine.py cuda` (PyTorch eager, same shapes)
//   3. 0.5B shape (random weights, BF16 on disk): LoRA train step (batch 8 × 256) and decode
//      tokens/s (generate, batch 32, 32-token prompts, 64 new tokens) on CUDA
//   4. the same checkpoint in Hugging Face transformers: generate tokens/s (fp32 and bf16) and a
//      rank-16 LoRA step (scripts/gpu-check-hf.py), when python3 has torch + transformers
// Writes one JSON results file (default bench/gpu-check-<date>.json) and prints a summary.
// Budget: under 8 minutes on an H100-class GPU.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import * as op from '../src/engine/index';
import { createEngine, type Engine } from '../src/engine/index';
import { LORA_TARGETS } from '../src/model/decoder';
import { CausalLM, type GenerateStats, generate, type LossHook } from '../src/model/index';
import { writeRandomCheckpoint } from './random-checkpoint';

const ROOT = join(import.meta.dirname, '..', '..');
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const out = arg('out', join(ROOT, 'bench', `gpu-check-${new Date().toISOString().slice(0, 10)}.json`));
const skipPython = process.argv.includes('--skip-python');
// a dry run of the script itself on a machine without a GPU: --device cpu --layers 2 --skip-python
const DEVICE = arg('device', 'cuda') as 'cuda' | 'cpu';
const LAYERS = Number(arg('layers', '24'));
const t0 = performance.now();
const results: Record<string, unknown> = {
  started: new Date().toISOString(),
  host: {
    cpus: os.cpus().length,
    cpu: os.cpus()[0]?.model,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
  },
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const nll: LossHook = ({ logp, mask }) => ({
  loss: op.div(
    op.neg(op.reduceSum(op.mul(logp, mask), undefined, false)),
    op.reduceSum(mask, undefined, false),
  ),
});

async function part(name: string, fn: () => Promise<Record<string, unknown>>): Promise<void> {
  const start = performance.now();
  try {
    results[name] = {
      ok: true,
      ...(await fn()),
      seconds: Number(((performance.now() - start) / 1000).toFixed(1)),
    };
  } catch (e) {
    results[name] = {
      ok: false,
      error: e instanceof Error ? e.message : String(e),
      seconds: Number(((performance.now() - start) / 1000).toFixed(1)),
    };
  }
  console.log(`${name}: ${JSON.stringify(results[name])}`);
  save();
}

function save(): void {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify({ ...results, totalSeconds: Number(((performance.now() - t0) / 1000).toFixed(1)) }, null, 2)}\n`,
  );
}

function sh(cmd: string, args: string[], timeoutMs: number): { code: number | null; out: string } {
  const r = spawnSync(cmd, args, {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env },
  });
  return { code: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

let cuda: Engine | null = null;
await part('device', async () => {
  cuda = await createEngine({ device: DEVICE });
  const smi = sh(
    'nvidia-smi',
    ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'],
    10_000,
  );
  return { device: cuda.device, notes: cuda.notes, gpu: smi.out.trim() };
});

await part('parity', async () => {
  if (!cuda) throw new Error('no CUDA engine (see device)');
  const cpu = await createEngine({ device: 'cpu' });
  const ids = Array.from({ length: 48 }, (_, i) => 5 + ((i * 131) % 2900));
  const rows: Record<string, number> = {};
  try {
    for (const name of ['tiny-qwen2', 'tiny-qwen3', 'tiny-llama']) {
      const dir = join(ROOT, 'gpu-runner', 'models', name);
      const a = await CausalLM.load(dir, { engine: cpu });
      const b = await CausalLM.load(dir, { engine: cuda });
      const la = await a.fullLogits(ids);
      const lb = await b.fullLogits(ids);
      let m = 0;
      for (let i = 0; i < la.length; i++) m = Math.max(m, Math.abs(la[i] - lb[i]));
      rows[name] = m;
      await a.close();
      await b.close();
    }
  } finally {
    await cpu.close();
  }
  const worst = Math.max(...Object.values(rows));
  if (!(worst < 1e-3))
    throw new Error(`CUDA logits differ from CPU by up to ${worst} (${JSON.stringify(rows)})`);
  return { maxAbsDiff: rows };
});

await part('engine_bench', async () => {
  const ts = sh(process.execPath, ['--import', 'tsx', 'bench/engine.ts', '--device', DEVICE], 150_000);
  const py = skipPython
    ? { code: null, out: 'skipped' }
    : sh('python3', ['bench/engine.py', DEVICE], 150_000);
  const lines = (s: string) =>
    s
      .split('\n')
      .filter((l) => /efficiency|tok|ms|GFLOP|TFLOP|step|peak/i.test(l))
      .slice(-12);
  if (ts.code !== 0) throw new Error(`bench/engine.ts exited ${ts.code}: ${ts.out.slice(-1500)}`);
  return {
    engine_ts: lines(ts.out),
    engine_py: py.code === 0 ? lines(py.out) : `exit ${py.code}: ${py.out.slice(-500)}`,
  };
});

const ckpt = join(os.tmpdir(), `cgrpo-gpu-check-qwen2.5-0.5b-${LAYERS}l`);
const dry = DEVICE === 'cpu';
const TRAIN = dry ? { batch: 2, seq: 32 } : { batch: 8, seq: 256 };
const DECODE = dry ? { batch: 4, prompt: 8, newTokens: 4 } : { batch: 32, prompt: 32, newTokens: 64 };
await part('qwen0.5b_shape', async () => {
  if (!cuda) throw new Error('no CUDA engine (see device)');
  const w0 = performance.now();
  const { weightBytes, params } = writeRandomCheckpoint(ckpt, '0.5b', { layers: LAYERS });
  const writeS = (performance.now() - w0) / 1000;
  const l0 = performance.now();
  const model = await CausalLM.load(ckpt, {
    engine: cuda,
    lora: { rank: 16, alpha: 32, dropout: 0, targets: [...LORA_TARGETS] },
  });
  const loadS = (performance.now() - l0) / 1000;
  try {
    const tokens = Array.from({ length: TRAIN.seq + 1 }, (_, i) => 100 + ((i * 37) % 2000));
    const seqs = Array.from({ length: TRAIN.batch }, () => ({ tokens, start: 1 }));
    const trainer = await model.trainer({ mode: 'lora', loss: nll, optimizer: { lr: 1e-5 } });
    await trainer.step(seqs);
    const times: number[] = [];
    for (let i = 0; i < 3; i++) times.push((await trainer.step(seqs)).ms);
    const prompts = Array.from({ length: DECODE.batch }, (_, b) =>
      Array.from({ length: DECODE.prompt }, (_, i) => 100 + ((b * 977 + i * 131) % 2800)),
    );
    await generate(model, prompts.slice(0, 1), { maxNewTokens: 2, temperature: 1 });
    const stats: GenerateStats = { prefillMs: 0, decodeMs: 0, steps: 0, generatedTokens: 0 };
    const g0 = performance.now();
    await generate(
      model,
      prompts,
      { maxNewTokens: DECODE.newTokens, temperature: 1, topP: 0.95, seed: 1, eosTokenIds: [] },
      stats,
    );
    const wall = (performance.now() - g0) / 1000;
    return {
      params,
      weightBytes,
      writeSeconds: Number(writeS.toFixed(1)),
      loadSeconds: Number(loadS.toFixed(1)),
      peakRssGiB: Number(((process.resourceUsage().maxRSS * 1024) / 2 ** 30).toFixed(2)),
      loraStepMs: Math.round(median(times)),
      loraStepShape: TRAIN,
      decodeTokPerS: Number(((stats.generatedTokens - DECODE.batch) / (stats.decodeMs / 1000)).toFixed(1)),
      endToEndTokPerS: Number((stats.generatedTokens / wall).toFixed(1)),
      decodeShape: DECODE,
    };
  } finally {
    await model.close();
  }
});

await part('transformers', async () => {
  if (skipPython) return { skipped: true };
  const r = sh(
    'python3',
    [
      join(ROOT, 'gpu-runner', 'scripts', 'gpu-check-hf.py'),
      ckpt,
      String(DECODE.batch),
      String(DECODE.prompt),
      String(DECODE.newTokens),
      String(TRAIN.batch),
      String(TRAIN.seq),
    ],
    240_000,
  );
  const line = r.out.split('\n').findLast((l) => l.startsWith('{'));
  if (r.code !== 0 || !line) throw new Error(`gpu-check-hf.py exited ${r.code}: ${r.out.slice(-1500)}`);
  return JSON.parse(line) as Record<string, unknown>;
});

await (cuda as Engine | null)?.close();
save();
const failed = Object.entries(results).filter(([, v]) => (v as { ok?: boolean }).ok === false);
console.log(
  `\ngpu:check wrote ${out} in ${((performance.now() - t0) / 1000).toFixed(0)} s; ${failed.length === 0 ? 'all parts ok' : `failed: ${failed.map(([k]) => k).join(', ')}`}`,
);
process.exitCode = failed.length === 0 ? 0 : 1;
