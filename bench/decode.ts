// npm run bench:decode [-- --layers 24 --batch 32 --new-tokens 16 --pairs 3 --chunk 8 --top-p 1 --tiny]
// Rollout decode tokens/s before/after in-graph sampling, on the Qwen2.5-0.5B shape (random bf16
// weights generated here, never downloaded; --tiny: the tiny-qwen2 checkpoint instead), at one
// batch: `generate` with the JS sampler (one-token runs, logits fetched, sampled on the main
// thread, no log-probs: the work the runner did before), with the in-graph sampler one step per
// run (chunk 1), and with `--chunk` unrolled steps per run. Decode rate = tokens after the
// prefill's / decode time (prefill excluded). The variants run interleaved, `--pairs` rounds, and
// each is compared with the bare-MatMul reference (the model's Linear layers alone on `batch`
// rows, float32 weights, measured in the same round; see bench/linear-reference.ts). Sampling: T = 1, top-p `--top-p` (default
// 1, the job spec's default), no EOS.
import { rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../gpu-runner/scripts/random-checkpoint';
import { CausalLM, type GenerateOptions, type GenerateStats, generate } from '../gpu-runner/src/model/index';
import { bareMatmulSeconds, median } from './linear-reference';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const flag = (name: string) => process.argv.includes(`--${name}`);
const LAYERS = Number(arg('layers', '24'));
const BATCH = Number(arg('batch', '32'));
const NEW_TOKENS = Number(arg('new-tokens', '16'));
const PAIRS = Number(arg('pairs', '3'));
const CHUNK = Number(arg('chunk', '8'));
/** the job spec's default sampling is T = 1, top_p = 1 (no sort); top-p < 1 sorts the vocabulary */
const TOP_P = Number(arg('top-p', '1'));
const THREADS = Number(arg('threads', '0')) || undefined;
const MODELS = join(import.meta.dirname, '..', 'gpu-runner', 'models');
/** A Qwen2.5-0.5B-shaped checkpoint (random BF16 weights, the tiny Qwen2 tokenizer) in a fresh temp folder. */
function writeQwen05b(layers: number): string {
  const dir = join(os.tmpdir(), `cgrpo-bench-qwen2.5-0.5b-${layers}l`);
  rmSync(dir, { recursive: true, force: true });
  return writeRandomCheckpoint(dir, '0.5b', { layers }).dir;
}

const started = Date.now();
let dir: string;
let name: string;
if (flag('tiny')) {
  dir = join(MODELS, 'tiny-qwen2');
  name = 'tiny-qwen2';
} else {
  const t0 = Date.now();
  dir = writeQwen05b(LAYERS);
  name = `qwen2.5-0.5b-shape (${LAYERS} layers)`;
  console.log(`wrote ${dir} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
const model = await CausalLM.load(dir, { threads: THREADS });
const tok = model.tokenizer;
const prompts = Array.from({ length: BATCH }, (_, i) =>
  tok.encode(
    tok.applyChatTemplate([
      { role: 'user', content: `What is ${i + 3} + ${2 * i + 5}? Think step by step.` },
    ]),
  ),
);
const base: GenerateOptions = {
  maxNewTokens: NEW_TOKENS,
  temperature: 1,
  topP: TOP_P,
  seed: 1,
  eosTokenIds: [],
};
const variants: { what: string; opts: Partial<GenerateOptions> }[] = [
  { what: 'JS sampler (one-token runs, logits to JS)', opts: { sampler: 'js', logprobs: false } },
  { what: 'in-graph sampling, 1 step per run', opts: { sampler: 'graph', chunk: 1 } },
  { what: `in-graph sampling, ${CHUNK} steps per run`, opts: { sampler: 'graph', chunk: CHUNK } },
];
// warm every graph (compilation is not timed)
for (const v of variants)
  await generate(model, prompts.slice(0, 1), { ...base, ...v.opts, maxNewTokens: NEW_TOKENS });
const rates = variants.map(() => [] as number[]);
const refs: number[] = [];
const runs = variants.map(() => 0);
for (let p = 0; p < PAIRS; p++) {
  for (const [i, v] of variants.entries()) {
    const stats: GenerateStats = { prefillMs: 0, decodeMs: 0, steps: 0, generatedTokens: 0 };
    await generate(model, prompts, { ...base, ...v.opts }, stats);
    rates[i].push((stats.generatedTokens - BATCH) / (stats.decodeMs / 1000));
    runs[i] = stats.steps;
    console.log(`round ${p} ${v.what}: ${rates[i].at(-1)?.toFixed(1)} tok/s (${stats.steps} decode runs)`);
  }
  refs.push(BATCH / (await bareMatmulSeconds(model, BATCH, 5)));
  console.log(`round ${p} reference: ${refs.at(-1)?.toFixed(1)} tok/s`);
}
await model.close();
if (!flag('tiny')) rmSync(dir, { recursive: true, force: true });
const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const ref = median(refs);
console.log(
  `\n| model | measure | batch | decode tokens/s (median of ${PAIRS}) | rounds | bare-MatMul reference tokens/s | ratio of medians (per round: to that round's reference) | decode runs |`,
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const [i, v] of variants.entries()) {
  console.log(
    `| ${name} | ${v.what} | ${BATCH} | ${fmt(median(rates[i]))} | ${rates[i].map(fmt).join(' / ')} | ${fmt(ref)} (${refs.map(fmt).join(' / ')}) | ${(median(rates[i]) / ref).toFixed(2)} (per round: ${rates[i].map((r, k) => (r / refs[k]).toFixed(2)).join(' / ')}) | ${runs[i]} |`,
  );
}
console.log(
  `\n${NEW_TOKENS} new tokens per row, T = 1, top-p ${TOP_P}; ${os.cpus().length} CPUs (${os.cpus()[0]?.model}); load ${os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}; Node ${process.version}; ${((Date.now() - started) / 1000).toFixed(0)} s`,
);
