// `npm run bench:learning`: does RL from the starter model learn, and do critiques help?
// start vs GRPO vs Critique-GRPO vs GRPO at equal generated tokens (a larger group), 3 seeds each,
// equal steps and prompts per step, all from gpu-runner/models/starter with builtin:math, on the
// real TrainingLoop (onnxruntime on CPU; no API, the same code the runner runs). Every run is
// evaluated greedily on the same fixed sample of the validation split (≥ 320 problems, disjoint
// from training). Two sanity rows show the reward is not gameable: a constant policy, and the
// trained responses scored against shuffled answers.
// Env: BENCH_STEPS (default 20), BENCH_EVAL (default 320), BENCH_SEEDS (default 3),
// BENCH_ARMS (comma list of grpo,critique-grpo,grpo-equal-tokens), BENCH_LR (default 3e-5), BENCH_PROMPTS (16), BENCH_TEMP (1), BENCH_FIRST_SEED (1),
// BENCH_MODEL (default gpu-runner/models/starter).
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { type JobSpec, parseJobSpec } from '@cgrpo/contract';
import { getBuiltinVerifier } from '@cgrpo/plugins/builtin';
import { fromHyperparameters, optimizerForJob } from '../gpu-runner/src/algo/config';
import { createEngine, type Engine } from '../gpu-runner/src/engine';
import { parseDataset } from '../gpu-runner/src/job/dataset';
import { evaluatePolicy } from '../gpu-runner/src/job/evaluate';
import { critiqueGrpoLoss } from '../gpu-runner/src/job/loss-graph';
import { resolvePlugins, type VerifyFn } from '../gpu-runner/src/job/plugins';
import { TrainingLoop } from '../gpu-runner/src/job/train';
import { CausalLM } from '../gpu-runner/src/model/model';

const root = join(import.meta.dirname, '..');
const STARTER = process.env.BENCH_MODEL ?? join(root, 'gpu-runner', 'models', 'starter');
const LR = Number(process.env.BENCH_LR ?? 3e-5);
const PROMPTS = Number(process.env.BENCH_PROMPTS ?? 16);
const TEMPERATURE = Number(process.env.BENCH_TEMP ?? 1);
const DATA = join(root, 'examples', 'datasets', 'arithmetic');
const STEPS = Number(process.env.BENCH_STEPS ?? 20);
const EVAL = Number(process.env.BENCH_EVAL ?? 320);
const FIRST_SEED = Number(process.env.BENCH_FIRST_SEED ?? 1);
const SEEDS = Array.from({ length: Number(process.env.BENCH_SEEDS ?? 3) }, (_, i) => i + FIRST_SEED);
const ARMS = (process.env.BENCH_ARMS ?? 'grpo,critique-grpo,grpo-equal-tokens').split(',');

/** The RL recipe of the demo and this bench (docs/quickstart.md shows the same spec). */
export function learningSpec(algorithm: 'grpo' | 'critique-grpo', seed: number, groupSize = 8): JobSpec {
  const r = parseJobSpec({
    algorithm,
    model: { id: 'starter', adapter: { type: 'full' } },
    datasets: {
      train: { uri: 'file:examples/datasets/arithmetic/train.jsonl' },
      validation: { uri: 'file:examples/datasets/arithmetic/validation.jsonl' },
    },
    verifier: { plugin: 'builtin:math' },
    ...(algorithm === 'critique-grpo' ? { critic: { plugin: 'builtin:ground-truth' } } : {}),
    seed,
    hyperparameters: {
      prompts_per_step: PROMPTS,
      group_size: groupSize,
      max_response_tokens: 48,
      max_prompt_tokens: 256,
      learning_rate: LR,
      total_steps: STEPS,
      mini_batches_per_step: 1,
      temperature: TEMPERATURE,
      ...(algorithm === 'grpo' ? { preset: 'dr-grpo' } : {}),
    },
  });
  if (!r.ok) throw new Error(JSON.stringify(r.fields));
  return r.spec;
}

const validation = parseDataset(
  readFileSync(join(DATA, 'validation.jsonl'), 'utf8'),
  { uri: 'file:x', format: 'jsonl', fields: { prompt: 'prompt', reference: 'answer' } },
  'validation',
).slice(0, EVAL);
const train = parseDataset(
  readFileSync(join(DATA, 'train.jsonl'), 'utf8'),
  { uri: 'file:x', format: 'jsonl', fields: { prompt: 'prompt', reference: 'answer' } },
  'train',
);
const math = getBuiltinVerifier('builtin:math');
const verify: VerifyFn = async (input) => ({ ok: true, value: await math.verify(input), ms: 0 });

async function evaluate(model: CausalLM, spec: JobSpec) {
  const hp = spec.hyperparameters;
  return evaluatePolicy(model, verify, validation, 0, {
    samplesPerPrompt: 1,
    temperature: 0,
    topP: 1,
    maxPrompts: null,
    seed: 0,
    maxNewTokens: hp.max_response_tokens,
    maxPromptTokens: hp.max_prompt_tokens,
    systemPrompt: hp.system_prompt,
    promptTemplate: hp.prompt_template,
  });
}

/** pass@1 of `responses` against the references shifted by `shift` (97: a fixed derangement, i.e. shuffled answers). */
async function shuffledScore(responses: string[], shift = 97): Promise<number> {
  let correct = 0;
  for (let i = 0; i < responses.length; i++) {
    const other = validation[(i + shift) % validation.length];
    const v = await math.verify({
      question: other.question,
      response: responses[i],
      reference: other.reference,
      metadata: {},
    });
    if (v.correct) correct++;
  }
  return correct / responses.length;
}

interface RunResult {
  arm: string;
  seed: number;
  pass1: number;
  generated: number;
  refinementSuccess: number | null;
  zeroSignal: number;
  /** mean train reward of the first and the last 3 steps */
  rewardFirst: number;
  rewardLast: number;
  seconds: number;
  responses: string[];
}

async function rlRun(engine: Engine, arm: string, seed: number, groupSize: number): Promise<RunResult> {
  const algorithm = arm === 'critique-grpo' ? 'critique-grpo' : 'grpo';
  const spec = learningSpec(algorithm, seed, groupSize);
  const hp = spec.hyperparameters;
  const algo = fromHyperparameters(hp, spec.algorithm);
  const model = await CausalLM.load(STARTER, { engine });
  const t0 = performance.now();
  try {
    const trainer = await model.trainer({
      mode: 'full',
      loss: critiqueGrpoLoss(algo),
      temperature: hp.temperature,
      optimizer: optimizerForJob(hp),
    });
    const plugins = await resolvePlugins(spec, {});
    const loop = new TrainingLoop(spec, algo, model, trainer, plugins, train);
    let generated = 0;
    const success: number[] = [];
    let zero = 0;
    const rewards: number[] = [];
    for (let step = 1; step <= hp.total_steps; step++) {
      const r = await loop.step(step);
      rewards.push(r.values['reward/mean'] ?? 0);
      generated += r.values['tokens/generated'] ?? 0;
      if (typeof r.values['refinement/success_rate'] === 'number')
        success.push(r.values['refinement/success_rate']);
      zero += (r.values['groups/zero_signal'] ?? 0) / hp.prompts_per_step;
    }
    const seconds = (performance.now() - t0) / 1000;
    const ev = await evaluate(model, spec);
    plugins.dispose();
    return {
      arm,
      seed,
      pass1: ev.values['eval/pass@1'] ?? 0,
      generated,
      refinementSuccess: success.length ? success.reduce((a, b) => a + b, 0) / success.length : null,
      zeroSignal: zero / hp.total_steps,
      rewardFirst: rewards.slice(0, 3).reduce((a, b) => a + b, 0) / Math.min(3, rewards.length),
      rewardLast: rewards.slice(-3).reduce((a, b) => a + b, 0) / Math.min(3, rewards.length),
      seconds,
      responses: ev.records.map((x) => x.response),
    };
  } finally {
    await model.close();
  }
}

const meanSd = (xs: number[]) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
  return { m, sd };
};

async function main() {
  const engine = await createEngine({ device: 'cpu', threads: 1 });
  const out: string[] = [];
  const log = (l: string) => {
    console.log(l);
    out.push(l);
  };
  log(`bench:learning — ${cpus()[0]?.model ?? 'cpu'} × ${cpus().length}, node ${process.version}`);
  log(
    `${STEPS} steps × 16 prompts, group 8 (equal-tokens GRPO: larger), ${EVAL} validation problems, greedy, builtin:math`,
  );
  const base = await CausalLM.load(STARTER, { engine });
  const start = await evaluate(base, learningSpec('grpo', 1));
  await base.close();
  const startPass = start.values['eval/pass@1'] ?? 0;
  log(
    `start: pass@1 ${startPass.toFixed(3)} (${start.values['eval/generated_tokens']} tokens generated in evaluation)`,
  );
  // sanity: a constant policy and the starter's own answers against shuffled references
  const constant = await shuffledScore(
    validation.map(() => 'The answer is \\boxed{100}.'),
    0,
  );
  log(`sanity: constant response "\\boxed{100}": pass@1 ${constant.toFixed(3)}`);
  log(
    `sanity: start responses vs shuffled answers: pass@1 ${(await shuffledScore(start.records.map((r) => r.response))).toFixed(3)}`,
  );

  const results: RunResult[] = [];
  log(
    '| arm | seed | eval pass@1 | train reward, first 3 → last 3 steps | generated tokens | refinement success | groups without signal | seconds |',
  );
  log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  const row = (r: RunResult) =>
    log(
      `| ${r.arm} | ${r.seed} | ${r.pass1.toFixed(3)} | ${r.rewardFirst.toFixed(3)} → ${r.rewardLast.toFixed(3)} | ${r.generated} | ${r.refinementSuccess?.toFixed(3) ?? '-'} | ${r.zeroSignal.toFixed(2)} | ${r.seconds.toFixed(0)} |`,
    );
  for (const seed of SEEDS) {
    let critiqueTokens = 0;
    let grpoTokens = 0;
    for (const arm of ARMS) {
      if (arm === 'grpo-equal-tokens') continue;
      const r = await rlRun(engine, arm, seed, 8);
      if (arm === 'critique-grpo') critiqueTokens = r.generated;
      else grpoTokens = r.generated;
      results.push(r);
      row(r);
    }
    // the group that matches Critique-GRPO's generated tokens: from this seed's two runs, or given
    // (BENCH_EQUAL_GROUP) when the arms run in separate processes
    const equalGroup =
      critiqueTokens > 0 && grpoTokens > 0
        ? Math.max(8, Math.round((8 * critiqueTokens) / grpoTokens))
        : Number(process.env.BENCH_EQUAL_GROUP ?? 0);
    if (ARMS.includes('grpo-equal-tokens') && equalGroup > 0) {
      const group = equalGroup;
      const r = await rlRun(engine, 'grpo-equal-tokens', seed, group);
      r.arm = `grpo-equal-tokens (group ${group})`;
      results.push(r);
      row(r);
    }
  }
  const arm = (prefix: string) =>
    meanSd(
      results
        .filter((r) => r.arm.startsWith(prefix) && !(prefix === 'grpo' && r.arm.startsWith('grpo-equal')))
        .map((r) => r.pass1),
    );
  const g = arm('grpo');
  const c = arm('critique-grpo');
  const e = arm('grpo-equal-tokens');
  const trained = results.filter((r) => r.arm === 'critique-grpo').flatMap((r) => r.responses);
  if (trained.length)
    log(
      `sanity: critique-grpo responses vs shuffled answers: pass@1 ${(await shuffledScore(trained.slice(0, EVAL))).toFixed(3)}`,
    );
  log(`grpo at equal generated tokens: ${e.m.toFixed(2)} ± ${e.sd.toFixed(2)}`);
  log(
    `learning: start ${startPass.toFixed(2)}, grpo ${g.m.toFixed(2)} ± ${g.sd.toFixed(2)}, critique-grpo ${c.m.toFixed(2)} ± ${c.sd.toFixed(2)} (${SEEDS.length} seeds, ${EVAL} eval samples, builtin:math)`,
  );
  await engine.close();
  mkdirSync(join(root, '.bench'), { recursive: true });
  appendFileSync(join(root, '.bench', 'learning.md'), `${out.join('\n')}\n\n`);
}

await main();
