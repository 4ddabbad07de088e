// `npm run bench:learning-probe`: one run of the learning bench's recipe with the knobs open, to
// find out *why* a run does or does not move held-out pass@1 (bench/RESULTS.md "learning: why").
// From gpu-runner/models/starter on the shipped arithmetic task with builtin:math: optionally
// evaluate at step 0, train PROBE_STEPS steps, evaluate on the same fixed validation sample
// (greedy and/or sampled), printing the train reward of every step.
// Env:
//   PROBE_ARM      critique-grpo (default) | grpo | sft (continued SFT on the worked solutions,
//                  PROBE_PROMPTS rows a step: the supervised run at the same problem budget)
//   PROBE_STEPS (20), PROBE_PROMPTS (16), PROBE_GROUP (8), PROBE_LR (3e-5), PROBE_SEED (1)
//   PROBE_ADAPTER  full (default) | lora (rank 16, alpha 32, all seven projections)
//   PROBE_TRAIN_LIMIT  train on the first N training problems only (e.g. 16: the same problems
//                  every step, which shows whether the update learns what it sees)
//   PROBE_MODEL (gpu-runner/models/starter) the model folder; PROBE_MAX_TOKENS (48) response budget
//   PROBE_EVAL (320) validation problems; PROBE_EVAL_TEMPS (0,1) temperatures, 0 = greedy;
//   PROBE_EVAL_K (1) samples per problem when sampling; PROBE_START_EVAL (1) evaluate step 0 too
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_PROMPT_TEMPLATE, DEFAULT_SYSTEM_PROMPT, parseJobSpec } from '@cgrpo/contract';
import { getBuiltinVerifier } from '@cgrpo/plugins/builtin';
import { fromHyperparameters, optimizerForJob } from '../gpu-runner/src/algo/config';
import { createEngine } from '../gpu-runner/src/engine';
import { type Example, parseDataset } from '../gpu-runner/src/job/dataset';
import { evaluatePolicy } from '../gpu-runner/src/job/evaluate';
import { critiqueGrpoLoss } from '../gpu-runner/src/job/loss-graph';
import { resolvePlugins, type VerifyFn } from '../gpu-runner/src/job/plugins';
import { SftLoop, sftFormat, sftLoss } from '../gpu-runner/src/job/sft';
import { TrainingLoop } from '../gpu-runner/src/job/train';
import { CausalLM } from '../gpu-runner/src/model/model';

const env = (name: string, fallback: string) => process.env[`PROBE_${name}`] ?? fallback;
const ARM = env('ARM', 'critique-grpo');
const STEPS = Number(env('STEPS', '20'));
const PROMPTS = Number(env('PROMPTS', '16'));
const LR = Number(env('LR', '3e-5'));
const ADAPTER = env('ADAPTER', 'full') as 'full' | 'lora';
const EVAL_TEMPS = env('EVAL_TEMPS', '0,1').split(',').map(Number);
const root = join(import.meta.dirname, '..');
const DATA = join(root, 'examples', 'datasets', 'arithmetic');
const STARTER = env('MODEL', join(root, 'gpu-runner', 'models', 'starter'));
const MAX_TOKENS = Number(env('MAX_TOKENS', '48'));

const read = (split: string, completion: boolean): Example[] =>
  parseDataset(
    readFileSync(join(DATA, `${split}.jsonl`), 'utf8'),
    {
      uri: 'file:x',
      format: 'jsonl',
      fields: { prompt: 'prompt', reference: 'answer', ...(completion ? { completion: 'solution' } : {}) },
    },
    split === 'train' ? 'train' : 'validation',
  );
const validation = read('validation', false).slice(0, Number(env('EVAL', '320')));
const train = read('train', ARM === 'sft').slice(0, Number(env('TRAIN_LIMIT', '1000000000')));
const math = getBuiltinVerifier('builtin:math');
const verify: VerifyFn = async (input) => ({ ok: true, value: await math.verify(input), ms: 0 });

async function evaluate(model: CausalLM, label: string) {
  const parts: string[] = [];
  for (const temperature of EVAL_TEMPS) {
    const e = await evaluatePolicy(model, verify, validation, 0, {
      samplesPerPrompt: temperature === 0 ? 1 : Number(env('EVAL_K', '1')),
      temperature,
      topP: 1,
      maxPrompts: null,
      seed: 0,
      maxNewTokens: MAX_TOKENS,
      maxPromptTokens: 256,
      systemPrompt: DEFAULT_SYSTEM_PROMPT,
      promptTemplate: DEFAULT_PROMPT_TEMPLATE,
    });
    parts.push(
      `${temperature === 0 ? 'greedy' : `T=${temperature}`} ${(e.values['eval/pass@1'] ?? 0).toFixed(3)}`,
    );
  }
  console.log(`${label}: pass@1 ${parts.join(', ')} (${validation.length} validation problems)`);
}

const algorithm = ARM === 'grpo' ? 'grpo' : 'critique-grpo';
const parsed = parseJobSpec({
  algorithm,
  model: {
    id: 'starter',
    adapter: ADAPTER === 'full' ? { type: 'full' } : { type: 'lora', rank: 16, alpha: 32 },
  },
  datasets: { train: { uri: 'file:x' } },
  verifier: { plugin: 'builtin:math' },
  ...(algorithm === 'critique-grpo' ? { critic: { plugin: 'builtin:ground-truth' } } : {}),
  seed: Number(env('SEED', '1')),
  hyperparameters: {
    prompts_per_step: PROMPTS,
    group_size: Number(env('GROUP', '8')),
    max_response_tokens: MAX_TOKENS,
    max_prompt_tokens: 256,
    learning_rate: LR,
    total_steps: STEPS,
    mini_batches_per_step: 1,
    ...(algorithm === 'grpo' ? { preset: 'dr-grpo' } : {}),
  },
});
if (!parsed.ok) throw new Error(JSON.stringify(parsed.fields));
const spec = parsed.spec;
const hp = spec.hyperparameters;
const algo = fromHyperparameters(hp, spec.algorithm);

const engine = await createEngine({ device: 'cpu', threads: 1 });
const model = await CausalLM.load(STARTER, {
  engine,
  ...(ADAPTER === 'lora'
    ? {
        lora: {
          rank: 16,
          alpha: 32,
          dropout: 0,
          targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
          seed: 1,
        },
      }
    : {}),
});
console.log(
  `probe: ${ARM}, ${ADAPTER}, lr ${LR}, ${STEPS} steps × ${PROMPTS} problems, ${train.length} training problems`,
);
if (env('START_EVAL', '1') !== '0') await evaluate(model, 'step 0');
const trainer = await model.trainer({
  mode: ADAPTER,
  loss: ARM === 'sft' ? sftLoss : critiqueGrpoLoss(algo),
  temperature: ARM === 'sft' ? 1 : hp.temperature,
  optimizer: optimizerForJob(hp),
});
const plugins = await resolvePlugins(spec, {});
const loop =
  ARM === 'sft'
    ? new SftLoop(model, trainer, train, sftFormat(spec), {
        perStep: PROMPTS,
        seed: spec.seed,
        dropLast: true,
      })
    : new TrainingLoop(spec, algo, model, trainer, plugins, train);
const t0 = performance.now();
let generated = 0;
for (let step = 1; step <= STEPS; step++) {
  const { values: v } = await loop.step(step);
  generated += v['tokens/generated'] ?? 0;
  const shown =
    ARM === 'sft' ? `loss ${v['train/loss']?.toFixed(3)}` : `train reward ${v['reward/mean']?.toFixed(3)}`;
  const refine = v['refinement/success_rate'];
  console.log(
    `step ${step}: ${shown}${typeof refine === 'number' ? `, refinement success ${refine.toFixed(2)}` : ''}, groups without signal ${v['groups/zero_signal'] ?? '-'}`,
  );
}
await evaluate(
  model,
  `step ${STEPS} (${generated} tokens generated, ${((performance.now() - t0) / 1000).toFixed(0)} s)`,
);
plugins.dispose();
await model.close();
await engine.close();
