// `npm run bench:runner`: the runner's training loop on the tiny Llama-shaped model on CPU —
// steps/s, the time split by phase, and the runner's overhead: the share of a step spent outside
// engine (onnxruntime) calls, split into the rollout module's sampling JS, plugin time (the
// verifier and critic: the user's reward code) and the runner's own job loop.
// Then one whole job: the real Runner (in this process, so its onnxruntime runs are timed) leases
// a job from the real API (workerd on loopback, as the e2e tests start it) and runs it to the end:
// model load, steps, evaluation, reporting, API I/O, checkpoints and the final drain. Its
// `runner overhead (whole job)` is the job's wall time minus onnxruntime runs, plugin calls and
// sampling JS, i.e. everything the runner itself adds.
import { mkdtempSync, readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseJobSpec } from '@cgrpo/contract';
import { fromHyperparameters } from '../gpu-runner/src/algo/config';
import { CompiledModel, createEngine } from '../gpu-runner/src/engine';
import { parseDataset } from '../gpu-runner/src/job/dataset';
import { executeJob } from '../gpu-runner/src/job/executor';
import { critiqueGrpoLoss } from '../gpu-runner/src/job/loss-graph';
import { resolvePlugins } from '../gpu-runner/src/job/plugins';
import { PHASES, TrainingLoop } from '../gpu-runner/src/job/train';
import { Logger } from '../gpu-runner/src/log';
import { CausalLM } from '../gpu-runner/src/model/model';
import { Runner } from '../gpu-runner/src/runner';
import { registerRunner, startApi, tinyJob } from '../gpu-runner/test/harness';

const root = join(import.meta.dirname, '..');
const steps = Number(process.env.BENCH_STEPS ?? 12);
const warmup = 2;

// Every onnxruntime call goes through CompiledModel.run: time them all (bench-only instrumentation).
// Calls can overlap (π_old scoring runs while refinements are generated), so the union of their
// intervals is counted: the wall time during which the engine has work.
let engineMs = 0;
let inflight = 0;
let busySince = 0;
const run = CompiledModel.prototype.run;
CompiledModel.prototype.run = async function (this: CompiledModel, ...args: Parameters<typeof run>) {
  if (inflight++ === 0) busySince = performance.now();
  try {
    return await run.apply(this, args);
  } finally {
    if (--inflight === 0) engineMs += performance.now() - busySince;
  }
};

interface Config {
  label: string;
  hp: Record<string, unknown>;
}

const configs: Config[] = [
  {
    label: 'demo (2 prompts × 3, 4 tokens)',
    hp: { prompts_per_step: 2, group_size: 3, max_response_tokens: 4 },
  },
  {
    label: 'wider (4 prompts × 8, 16 tokens)',
    hp: { prompts_per_step: 4, group_size: 8, max_response_tokens: 16 },
  },
];

const lines: string[] = [];
for (const c of configs) {
  const parsed = parseJobSpec({
    model: { id: 'tiny-llama', adapter: { type: 'lora', rank: 4, alpha: 8 } },
    datasets: { train: { uri: 'file:examples/datasets/arith-train.jsonl' } },
    seed: 1,
    hyperparameters: {
      learning_rate: 0.01,
      total_steps: 1000,
      system_prompt: '',
      prompt_template: '{question} =',
      mini_batches_per_step: 1,
      max_prompt_tokens: 64,
      ...c.hp,
    },
  });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.fields));
  const spec = parsed.spec;
  const algo = fromHyperparameters(spec.hyperparameters, spec.algorithm, spec.shaping?.config);
  const engine = await createEngine({ device: 'cpu' });
  const lora = {
    rank: 4,
    alpha: 8,
    dropout: 0,
    targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as never,
    seed: 1,
  };
  const model = await CausalLM.load(join(root, 'gpu-runner/models/tiny-llama'), { engine, lora });
  const trainer = await model.trainer({
    mode: 'lora',
    loss: critiqueGrpoLoss(algo),
    optimizer: { lr: 0.01, maxGradNorm: 1 },
  });
  const train = parseDataset(
    readFileSync(join(root, 'examples/datasets/arith-train.jsonl'), 'utf8'),
    spec.datasets.train,
    'train',
  );
  const loop = new TrainingLoop(spec, algo, model, trainer, await resolvePlugins(spec), train);
  for (let s = 1; s <= warmup; s++) await loop.step(s);
  engineMs = 0;
  const phase: Record<string, number> = {};
  let modelCallsMs = 0;
  let pluginsMs = 0;
  let runnerMs = 0;
  const t0 = performance.now();
  for (let s = warmup + 1; s <= warmup + steps; s++) {
    const r = await loop.step(s);
    modelCallsMs += (r.values['time/engine'] ?? 0) * 1000;
    pluginsMs += (r.values['time/plugins'] ?? 0) * 1000;
    runnerMs += (r.values['time/runner'] ?? 0) * 1000;
    for (const p of PHASES) phase[p] = (phase[p] ?? 0) + (r.values[`time/${p}`] ?? 0) * 1000;
  }
  const total = performance.now() - t0;
  await model.close();
  await engine.close();
  // the loop measures, per step, the wall time with a model call in flight, with a plugin call in
  // flight, and the rest (the runner's own work, nothing else running); they can overlap, since π_old
  // scoring runs in the engine's worker while this thread verifies and critiques
  const rolloutJs = Math.max(0, modelCallsMs - engineMs);
  const pluginWall = pluginsMs;
  const runnerOwn = runnerMs;
  const pct = (x: number) => `${((100 * x) / total).toFixed(1)}%`;
  const split = PHASES.map((p) => `${p} ${pct(phase[p])}`).join(', ');
  lines.push(
    `| ${c.label} | ${(steps / (total / 1000)).toFixed(2)} | ${(total / steps).toFixed(0)} ms | ${split} | ${pct(engineMs)} | ${pct(rolloutJs)} | ${pct(pluginWall)} | runner overhead (in step): ${pct(runnerOwn)} | ${pct(total - engineMs)} |`,
  );
  console.log(lines[lines.length - 1]);
}
console.log(
  `\n${cpus().length} CPUs (${cpus()[0]?.model}), Node ${process.versions.node}, ${steps} steps after ${warmup} warm-up steps`,
);
console.log(
  '| config | steps/s | step | phases (share of step) | onnxruntime runs | sampling JS (rollout/) | plugins (verify, critique) | runner (job loop) | all outside onnxruntime |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const l of lines) console.log(l);

// ---- the whole job ----
const wholeSteps = Number(process.env.BENCH_JOB_STEPS ?? 8);
const api = await startApi();
try {
  const { token } = registerRunner(api, 'bench-runner');
  const spec = tinyJob({ checkpoint_every: 4 }, { total_steps: wholeSteps });
  const submitted = await api.request<{ id: string }>('POST', '/v1/jobs', spec);
  if (submitted.status !== 201) throw new Error(`submit: ${JSON.stringify(submitted.body)}`);
  // per step: the loop's own split, and the onnxruntime time inside the step
  let stepWallMs = 0;
  let stepEngineMs = 0;
  let stepModelCallsMs = 0;
  let stepPluginsMs = 0;
  let stepRunnerMs = 0;
  let stepCount = 0;
  const step = TrainingLoop.prototype.step;
  TrainingLoop.prototype.step = async function (this: TrainingLoop, ...args: Parameters<typeof step>) {
    const [e0, t0] = [engineMs, performance.now()];
    const r = await step.apply(this, args);
    stepWallMs += performance.now() - t0;
    stepEngineMs += engineMs - e0;
    stepModelCallsMs += (r.values['time/engine'] ?? 0) * 1000;
    stepPluginsMs += (r.values['time/plugins'] ?? 0) * 1000;
    stepRunnerMs += (r.values['time/runner'] ?? 0) * 1000;
    stepCount++;
    return r;
  };
  let jobMs = 0;
  let jobEngineMs = 0;
  const runJob = Runner.prototype.runJob;
  Runner.prototype.runJob = async function (this: Runner, ...args: Parameters<typeof runJob>) {
    const [e0, t0] = [engineMs, performance.now()];
    try {
      return await runJob.apply(this, args);
    } finally {
      jobMs = performance.now() - t0;
      jobEngineMs = engineMs - e0;
    }
  };
  const runner = new Runner({
    api: api.url,
    token,
    labels: [],
    capabilities: ['cpu'],
    device: 'cpu',
    workDir: mkdtempSync(join(tmpdir(), 'cgrpo-bench-runner-')),
    maxJobs: 1,
    modelDirs: [join(root, 'gpu-runner', 'models')],
    log: new Logger({ level: 'warn' }),
    executor: (ctx) => executeJob(ctx),
    exitAfterJobs: 1,
    leaseWaitSeconds: 2,
  });
  await runner.run();
  const job = await api.request<{ status: string }>('GET', `/v1/jobs/${submitted.body.id}`);
  const samplingJs = Math.max(0, stepModelCallsMs - stepEngineMs);
  const outsideSteps = jobMs - stepWallMs;
  const overhead = jobMs - jobEngineMs - stepPluginsMs - samplingJs;
  const pct = (x: number) => `${((100 * x) / jobMs).toFixed(1)}%`;
  console.log(
    `\nwhole job (${job.body.status}): ${stepCount} steps of 2 prompts × 3, 4 tokens, checkpoint every 4, evaluation every 2; ${(jobMs / 1000).toFixed(2)} s from lease to the last report`,
  );
  console.log(
    `onnxruntime runs ${pct(jobEngineMs)}, sampling JS ${pct(samplingJs)}, plugins ${pct(stepPluginsMs)}; outside the steps (load, evaluation, reports, checkpoints, drain) ${pct(outsideSteps)}`,
  );
  console.log(`runner overhead (in step): ${((100 * stepRunnerMs) / stepWallMs).toFixed(1)}%`);
  console.log(`runner overhead (whole job): ${pct(overhead)}`);
} finally {
  await api.stop();
}
