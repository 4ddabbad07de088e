// npm run bench:model [-- --layers 24 --new-tokens 16 --skip-05b --threads 2]
// Rollout throughput (generated tokens/s) at batch 1, 8, 32 and train-step tokens/s (LoRA and full)
// on the tiny Qwen2/Qwen3/Llama checkpoints and on a Qwen2.5-0.5B-shaped model with random weights
// (generated here, never downloaded). Every number is also given as a ratio to a bare-MatMul
// reference measured in the same run on weights of the same shapes (bench/linear-reference.ts):
// the time onnxruntime needs for just the model's Linear layers at that batch (decode: one row per
// sequence; training: 3× the forward
// matmuls for full fine-tuning, 2× for LoRA, whose frozen weights need no weight gradient).
// The reference is NOT a bound: it is a separate graph with its own per-run cost and its own
// kernel choices (one lm_head product over every row, a reduction over its output), so a real
// step can beat it (ratio > 1; the 0.5B LoRA step did, at 2.08). The in-graph rows time
// `generateInGraph` (prefill and the decode Loop in one run), the decode rows `generate`.
import { rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../gpu-runner/scripts/random-checkpoint';
import * as op from '../gpu-runner/src/engine/index';
import { LORA_TARGETS } from '../gpu-runner/src/model/decoder';
import {
  CausalLM,
  type GenerateStats,
  generate,
  generateInGraph,
  type LossHook,
} from '../gpu-runner/src/model/index';
import { bareMatmulSeconds, median } from './linear-reference';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const flag = (name: string) => process.argv.includes(`--${name}`);
const LAYERS_05B = Number(arg('layers', '24'));
const NEW_TOKENS = Number(arg('new-tokens', '16'));
const THREADS = Number(arg('threads', '0')) || undefined;
const MODELS = join(import.meta.dirname, '..', 'gpu-runner', 'models');
const rssGiB = () => (process.resourceUsage().maxRSS * 1024) / 2 ** 30;

const nll: LossHook = ({ logp, mask }) => ({
  loss: op.div(
    op.neg(op.reduceSum(op.mul(logp, mask), undefined, false)),
    op.reduceSum(mask, undefined, false),
  ),
});

/** A Qwen2.5-0.5B-shaped checkpoint (random BF16 weights, the tiny Qwen2 tokenizer) in a fresh temp folder. */
function writeQwen05b(layers: number): string {
  const dir = join(os.tmpdir(), `cgrpo-bench-qwen2.5-0.5b-${layers}l`);
  rmSync(dir, { recursive: true, force: true });
  return writeRandomCheckpoint(dir, '0.5b', { layers }).dir;
}

interface Row {
  model: string;
  what: string;
  batch: number;
  tokensPerSec: number;
  referenceTokensPerSec: number;
  note: string;
}
const rows: Row[] = [];

async function rollout(
  name: string,
  model: CausalLM,
  batches: number[],
  newTokens: number,
  inGraph = false,
): Promise<void> {
  const tok = model.tokenizer;
  const gen = inGraph ? generateInGraph : generate;
  const questions = Array.from(
    { length: 32 },
    (_, i) => `What is ${i + 3} + ${2 * i + 5}? Think step by step.`,
  );
  for (const B of batches) {
    const prompts = questions
      .slice(0, B)
      .map((q) => tok.encode(tok.applyChatTemplate([{ role: 'user', content: q }])));
    await gen(model, prompts.slice(0, 1), { maxNewTokens: 2, temperature: 1, topP: 0.95 }); // warm the graphs
    const stats: GenerateStats = { prefillMs: 0, decodeMs: 0, steps: 0, generatedTokens: 0 };
    const t0 = performance.now();
    await gen(
      model,
      prompts,
      { maxNewTokens: newTokens, temperature: 1, topP: 0.95, seed: 1, eosTokenIds: [] },
      stats,
    );
    const wall = (performance.now() - t0) / 1000;
    // generate: the first token of each row comes from the prefill, so decode = the rest over
    // decodeMs; generateInGraph runs prefill and decode in one graph run (all of it is decodeMs)
    const rate = inGraph
      ? stats.generatedTokens / ((stats.prefillMs + stats.decodeMs) / 1000)
      : (stats.generatedTokens - B) / (stats.decodeMs / 1000);
    const reference = B / (await bareMatmulSeconds(model, B, 5));
    rows.push({
      model: name,
      what: inGraph ? 'rollout, generateInGraph (prefill + Loop, one run)' : 'rollout decode (generate)',
      batch: B,
      tokensPerSec: rate,
      referenceTokensPerSec: reference,
      note: `${stats.generatedTokens} tokens, ${wall.toFixed(2)} s wall${inGraph ? '' : ` incl. prefill ${(stats.prefillMs / 1000).toFixed(2)} s`} (${(stats.generatedTokens / wall).toFixed(1)} tok/s end to end)`,
    });
    console.log(rows.at(-1));
  }
}

async function trainStep(
  name: string,
  dir: string,
  mode: 'lora' | 'full',
  batch: number,
  seq: number,
  steps: number,
): Promise<void> {
  const model = await CausalLM.load(
    dir,
    mode === 'lora'
      ? { threads: THREADS, lora: { rank: 16, alpha: 32, dropout: 0, targets: [...LORA_TARGETS] } }
      : { threads: THREADS },
  );
  const tokens = Array.from({ length: seq + 1 }, (_, i) => 100 + ((i * 37) % 2000));
  const seqs = Array.from({ length: batch }, () => ({ tokens, start: 1 }));
  const trainer = await model.trainer({ mode, loss: nll, optimizer: { lr: 1e-5 } });
  await trainer.step(seqs);
  const times: number[] = [];
  for (let i = 0; i < steps; i++) times.push((await trainer.step(seqs)).ms / 1000);
  const t = median(times);
  const factor = mode === 'full' ? 3 : 2;
  const reference = (batch * seq) / (factor * (await bareMatmulSeconds(model, batch * seq, 3)));
  rows.push({
    model: name,
    what: `train step (${mode})`,
    batch,
    tokensPerSec: (batch * seq) / t,
    referenceTokensPerSec: reference,
    note: `${batch}×${seq} tokens, ${(t * 1000).toFixed(0)} ms/step, reference = ${factor}× forward matmuls`,
  });
  console.log(rows.at(-1));
  await model.close();
}

const started = Date.now();
for (const fam of ['qwen2', 'qwen3', 'llama']) {
  const dir = join(MODELS, `tiny-${fam}`);
  const model = await CausalLM.load(dir, { threads: THREADS });
  await rollout(`tiny-${fam}`, model, [1, 8, 32], 32);
  await rollout(`tiny-${fam}`, model, [1, 8, 32], 32, true);
  await model.close();
  await trainStep(`tiny-${fam}`, dir, 'lora', 8, 64, 5);
  await trainStep(`tiny-${fam}`, dir, 'full', 8, 64, 5);
}
let big = '';
if (!flag('skip-05b')) {
  const t0 = Date.now();
  const dir = writeQwen05b(LAYERS_05B);
  big = `qwen2.5-0.5b-shape (${LAYERS_05B} layers)`;
  console.log(`wrote ${dir} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const t1 = Date.now();
  const model = await CausalLM.load(dir, { threads: THREADS });
  console.log(`loaded in ${((Date.now() - t1) / 1000).toFixed(1)} s, peak RSS ${rssGiB().toFixed(2)} GiB`);
  await rollout(big, model, [1, 8, 32], NEW_TOKENS);
  await model.close();
  await trainStep(big, dir, 'lora', 4, 64, 3);
  rmSync(dir, { recursive: true, force: true });
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const lines = [
  `| model | measure | batch | tokens/s | bare-MatMul reference tokens/s | ratio to reference | notes |`,
  `| --- | --- | --- | --- | --- | --- | --- |`,
  ...rows.map(
    (r) =>
      `| ${r.model} | ${r.what} | ${r.batch} | ${fmt(r.tokensPerSec)} | ${fmt(r.referenceTokensPerSec)} | ${(r.tokensPerSec / r.referenceTokensPerSec).toFixed(2)} | ${r.note} |`,
  ),
];
console.log(`\n${lines.join('\n')}`);
console.log(
  `\npeak RSS ${rssGiB().toFixed(2)} GiB; ${os.cpus().length} CPUs (${os.cpus()[0]?.model}); Node ${process.version}; ${((Date.now() - started) / 1000).toFixed(0)} s`,
);
