// The job executor: a job is its phases, in order — prepare the job (model, plugins, datasets,
// algorithm), load the policy (resuming from the latest checkpoint when there is one), then per
// step: train, evaluate when due, report the step, ask whether to stop, checkpoint when due — and
// finish with the final checkpoint. Reports and checkpoints go into the reporter's outbox and leave
// in the background, so an unreachable API never holds training up.
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { JobSpec } from '@cgrpo/contract';
import { type AlgoConfig, fromHyperparameters, optimizerForJob } from '../algo/config';
import { ApiError } from '../api-client';
import { apiFileDownload, cachedBundles } from '../download';
import { createEngine, type Engine } from '../engine';
import { CausalLM, type ModelTrainer } from '../model/model';
import { generate } from '../rollout/generate';
import {
  fetchCheckpoint,
  packFolder,
  restoreOptimizer,
  saveCheckpointFolder,
  type TrainerState,
} from './checkpoint';
import { isCheckpointModel, resolveCheckpointModel } from './checkpoint-model';
import { type Example, loadDataset } from './dataset';
import { evaluatePolicy, specEvaluationOptions } from './evaluate';
import { critiqueGrpoLoss } from './loss-graph';
import { fetchModelArtifact, resolveModel } from './model-store';
import { type JobPlugins, type PluginHostOptions, type PolicyGenerate, resolvePlugins } from './plugins';
import { SftLoop, sftFormat, sftLoss } from './sft';
import { batchRows, type StepResult, streamSeed, TrainingLoop } from './train';
import { type JobContext, JobError, type JobOutcome, type StopReason } from './types';

/** The final checkpoint must reach the API before the job completes: wait this long for it. */
const FINAL_DRAIN_MS = 10 * 60_000;

/**
 * Runs one leased job. `host` carries the runner-wide plugin settings (cgrpo-runner's --llm-* and
 * sandbox flags).
 */
export async function executeJob(ctx: JobContext, host: PluginHostOptions = {}): Promise<JobOutcome> {
  const own: Owned = { engine: null, model: null, reference: null, plugins: null };
  try {
    return await run(ctx, host, own);
  } catch (e) {
    if (ctx.control.signal.aborted)
      return { status: 'failed', code: 'lease_lost', message: 'lease lost', retryable: true };
    if (e instanceof JobError)
      return { status: 'failed', code: e.code, message: e.message, retryable: e.retryable };
    if (e instanceof ApiError)
      return { status: 'failed', code: e.code, message: e.message, retryable: e.retryable };
    const err = e as Error & { code?: unknown; field?: unknown };
    const code = typeof err.code === 'string' ? err.code : 'runner_error';
    ctx.log.error('job error', { error: err.message, stack: err.stack });
    return { status: 'failed', code, message: err.message ?? String(e), retryable: false };
  } finally {
    own.plugins?.dispose();
    await own.model?.close().catch(() => {});
    await own.reference?.close().catch(() => {});
    await own.engine?.close().catch(() => {});
  }
}

/** What a job holds and the executor frees when it ends, however it ends. */
interface Owned {
  engine: Engine | null;
  model: CausalLM | null;
  reference: CausalLM | null;
  plugins: JobPlugins | null;
}

/** What the step loop drives: Critique-GRPO/GRPO (TrainingLoop) or SFT (SftLoop). */
export interface StepLoop {
  currentStep: number;
  step(step: number): Promise<StepResult>;
}

async function run(ctx: JobContext, host: PluginHostOptions, own: Owned): Promise<JobOutcome> {
  const job = await prepareJob(ctx, host, own);
  if (job.spec.algorithm === 'evaluate') return evaluateOnly(ctx, job, own);
  const policy = await loadPolicy(ctx, job, own);
  const loop: StepLoop =
    job.spec.algorithm === 'sft'
      ? new SftLoop(policy.model, policy.trainer, job.train, sftFormat(job.spec), {
          perStep: job.spec.hyperparameters.prompts_per_step,
          seed: job.spec.seed,
          dropLast: job.spec.hyperparameters.drop_last,
        })
      : new TrainingLoop(
          job.spec,
          job.algo,
          policy.model,
          policy.trainer,
          job.plugins,
          job.train,
          policy.reference,
        );
  job.selfCritic.attach(policy.model, loop);
  return trainSteps(ctx, job, policy, loop);
}

/** The job's engine, created once (model loading and checkpoint merging share it). */
async function engineOf(ctx: JobContext, own: Owned): Promise<Engine> {
  own.engine ??= await createEngine({
    device: ctx.device === 'auto' ? 'auto' : ctx.device,
    ...(ctx.threads ? { threads: ctx.threads } : {}),
  });
  return own.engine;
}

// ---- prepare the job ---------------------------------------------------------------------------

/** Everything a job needs before a model is loaded. */
export interface PreparedJob {
  spec: JobSpec;
  modelDir: string;
  plugins: JobPlugins;
  algo: AlgoConfig;
  train: Example[];
  validation: Example[] | null;
  selfCritic: SelfCritic;
}

/** Resolves the model folder, the plugins, the algorithm and the datasets; fails early on bad data. */
async function prepareJob(ctx: JobContext, host: PluginHostOptions, own: Owned): Promise<PreparedJob> {
  const { lease, api, reporter, log } = ctx;
  const spec = lease.spec;
  const hp = spec.hyperparameters;
  const cacheDir = join(ctx.workDir, '..', 'model-cache');
  const resolveBase = (id: string): Promise<string> =>
    id.startsWith('artifact://')
      ? fetchModelArtifact(id, { toFile: apiFileDownload(api) }, cacheDir, log)
      : resolveModel({ ...spec.model, id }, ctx.modelDirs, { log });
  const modelDir = isCheckpointModel(spec.model.id)
    ? await resolveCheckpointModel(spec.model.id, {
        api,
        cacheDir,
        engine: () => engineOf(ctx, own),
        resolveBase,
      })
    : await resolveBase(spec.model.id);
  const selfCritic = new SelfCritic(spec);
  const plugins = await resolvePlugins(spec, {
    ...host,
    resolved: lease.plugins,
    download: cachedBundles(join(ctx.workDir, '..', 'bundle-cache'), (path) => api.download(path)),
    generate: selfCritic.generate,
    log,
    onPluginLog: (data) => reporter.event('job.log', { ...data }),
  });
  own.plugins = plugins;
  if (plugins.sandboxed.length)
    reporter.event('job.progress', { phase: 'plugins', sandboxed: plugins.sandboxed });
  // a published shaping plugin's expression replaces the spec's (it is compiled into the loss graph)
  const algo = fromHyperparameters(hp, spec.algorithm, plugins.shaping ?? spec.shaping?.config);
  const train = await loadDataset(spec.datasets.train, api, 'datasets.train', spec.algorithm === 'sft');
  const validation = spec.datasets.validation
    ? await loadDataset(spec.datasets.validation, api, 'datasets.validation')
    : null;
  if (spec.algorithm !== 'evaluate') batchRows(1, train.length, hp.prompts_per_step, spec.seed, hp.drop_last); // fails early if too small
  return { spec, modelDir, plugins, algo, train, validation, selfCritic };
}

/**
 * builtin:self critiques with the policy: one generation at a time (they share the KV cache), in
 * call order, each seeded by (step, call within the step), so a resumed job critiques exactly as
 * before.
 */
class SelfCritic {
  private policy: CausalLM | null = null;
  private loop: StepLoop | null = null;
  private step = -1;
  private calls = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly spec: JobSpec) {}

  attach(policy: CausalLM, loop: StepLoop): void {
    this.policy = policy;
    this.loop = loop;
  }

  readonly generate: PolicyGenerate = (messages, o) => {
    const step = this.loop?.currentStep ?? 0;
    if (step !== this.step) {
      this.step = step;
      this.calls = 0;
    }
    const call = this.calls++;
    const next = this.queue.then(async () => {
      const policy = this.policy;
      if (!policy) throw new Error('the policy model is not loaded yet');
      const text = policy.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
      const ids = policy.tokenizer.encode(text).slice(-this.spec.hyperparameters.max_prompt_tokens);
      const [c] = await generate(policy, [ids], {
        maxNewTokens: o.max_tokens,
        temperature: o.temperature,
        topP: o.top_p,
        seed: streamSeed(this.spec.seed, 'self-critic', step, call),
      });
      return c.text;
    });
    this.queue = next.catch(() => undefined);
    return next;
  };
}

// ---- load the policy ---------------------------------------------------------------------------

/** The model being trained, its trainer, the frozen KL reference, and where an earlier attempt left off. */
export interface LoadedPolicy {
  model: CausalLM;
  trainer: ModelTrainer;
  reference: CausalLM | null;
  /** The trainer state of the checkpoint resumed from (null: a fresh start). */
  resumed: TrainerState | null;
}

async function loadPolicy(ctx: JobContext, job: PreparedJob, own: Owned): Promise<LoadedPolicy> {
  const { lease, log } = ctx;
  const { spec, algo, modelDir } = job;
  const hp = spec.hyperparameters;
  // resume: the latest complete checkpoint of an earlier attempt
  let resumeDir: string | null = null;
  let resumed: TrainerState | null = null;
  if (lease.resume_from) {
    resumeDir = join(ctx.workDir, 'resume');
    resumed = await fetchCheckpoint(
      ctx.api,
      lease.job_id,
      lease.resume_from,
      join(ctx.workDir, 'checkpoints'),
      resumeDir,
    );
    log.info('resuming', { from_step: resumed.step, checkpoint: lease.resume_from.id });
  }
  const engine = await engineOf(ctx, own); // closed even when loading the model fails
  const adapter = spec.model.adapter;
  const lora =
    adapter.type === 'lora'
      ? {
          rank: adapter.rank,
          alpha: adapter.alpha,
          dropout: adapter.dropout,
          targets: adapter.target_modules as never,
          seed: spec.seed,
        }
      : undefined;
  const model = await CausalLM.load(resumeDir && adapter.type === 'full' ? resumeDir : modelDir, {
    engine,
    ...(resumeDir && adapter.type === 'lora' ? { adapterPath: resumeDir } : lora ? { lora } : {}),
  });
  own.model = model;
  const sft = spec.algorithm === 'sft';
  const trainer = await model.trainer({
    mode: adapter.type,
    // SFT: the likelihood of the completion as written (temperature 1); RL: the sampling policy's
    loss: sft ? sftLoss : critiqueGrpoLoss(algo),
    temperature: sft ? 1 : hp.temperature,
    // warmup and total in optimizer steps (rollout steps × mini-batches × epochs; SFT: 1 per step)
    optimizer: optimizerForJob(hp),
  });
  if (resumeDir) await restoreOptimizer(resumeDir, trainer);
  // the KL term's reference policy: the base model as loaded, frozen (never trained, never resumed)
  let reference: CausalLM | null = null;
  if (algo.klCoef > 0) {
    reference = await CausalLM.load(modelDir, { engine });
    own.reference = reference;
  }
  return { model, trainer, reference, resumed };
}

// ---- the steps ---------------------------------------------------------------------------------

async function trainSteps(
  ctx: JobContext,
  job: PreparedJob,
  policy: LoadedPolicy,
  loop: StepLoop,
): Promise<JobOutcome> {
  const { lease, reporter, control } = ctx;
  const { spec } = job;
  const hp = spec.hyperparameters;
  const firstStep = (policy.resumed?.step ?? 0) + 1;
  const alreadyStored = lease.last_step ?? 0;
  reporter.event('job.progress', {
    phase: 'started',
    step: firstStep - 1,
    total_steps: hp.total_steps,
    resumed_from: policy.resumed?.step ?? null,
    // the determinism promise holds for one thread count (docs/runner.md, "Determinism")
    threads: ctx.threads ?? null,
  });
  let lastValues: Record<string, number | null> = {};
  for (let step = firstStep; step <= hp.total_steps; step++) {
    const pending = control.stopRequest();
    if (pending) return stopAt(ctx, job, policy, step - 1, pending);
    if (control.signal.aborted) throw new JobError('lease_lost', 'lease lost', true);
    control.progress(step, `step ${step}/${hp.total_steps}`);
    const result = await loop.step(step);
    const evaluation = await evaluateIfDue(job, policy.model, step);
    const values = { ...result.values, ...evaluation };
    lastValues = values;
    if (step > alreadyStored) await reportStep(ctx, step, result, values, evaluation);
    logStep(ctx, step, values);
    // a cancel or pause requested during this step is heard now, not at the next heartbeat
    await control.poll();
    const last = step === hp.total_steps;
    if (!last && spec.checkpoint_every > 0 && step % spec.checkpoint_every === 0)
      await checkpointSafely(ctx, job, policy, step);
  }
  return finish(ctx, job, policy, lastValues);
}

/** The evaluation values of this step, when one is due (every `every_steps`, and at the end). */
async function evaluateIfDue(
  job: PreparedJob,
  model: CausalLM,
  step: number,
): Promise<Record<string, number | null> | null> {
  const { spec, validation } = job;
  const due =
    (spec.evaluation.every_steps > 0 && step % spec.evaluation.every_steps === 0) ||
    (spec.evaluation.at_end && step === spec.hyperparameters.total_steps);
  if (!validation || !due) return null;
  return (
    await evaluatePolicy(model, job.plugins.verify, validation, step, specEvaluationOptions(job.spec, step))
  ).values;
}

// ---- evaluation jobs ---------------------------------------------------------------------------

/**
 * `algorithm: 'evaluate'`: no training. The model (or checkpoint) answers every prompt of
 * datasets.validation (datasets.train when there is none) samples_per_prompt times; the metrics
 * are stored as step 0 and every response, with its verdict, in the rollout store.
 */
async function evaluateOnly(ctx: JobContext, job: PreparedJob, own: Owned): Promise<JobOutcome> {
  const { reporter } = ctx;
  const model = await CausalLM.load(job.modelDir, { engine: await engineOf(ctx, own) });
  own.model = model;
  const examples = job.validation ?? job.train;
  reporter.event('job.progress', { phase: 'started', step: 0, total_steps: 0, prompts: examples.length });
  ctx.control.progress(0, `evaluating ${examples.length} prompts`);
  const { values, records } = await evaluatePolicy(
    model,
    job.plugins.verify,
    examples,
    0,
    specEvaluationOptions(job.spec, 0),
  );
  reporter.event('job.evaluated', { step: 0, ...values });
  reporter.metric(0, values);
  const gz = gzipSync(`${records.map((r) => JSON.stringify(r)).join('\n')}\n`);
  await reporter.room(gz.byteLength, ctx.control.signal);
  reporter.rollouts(0, gz);
  await reporter.drain(FINAL_DRAIN_MS);
  ctx.log.info('evaluated', { prompts: values['eval/prompts'], 'eval/pass@1': values['eval/pass@1'] });
  return { status: 'succeeded', summary: { steps: 0, ...values } };
}

// ---- report a step -----------------------------------------------------------------------------

/** Queues the step's metric point, its events and its rollouts; they leave in the background. */
async function reportStep(
  ctx: JobContext,
  step: number,
  result: StepResult,
  values: Record<string, number | null>,
  evaluation: Record<string, number | null> | null,
): Promise<void> {
  const { reporter, lease } = ctx;
  if (evaluation) reporter.event('job.evaluated', { step, ...evaluation });
  reporter.metric(step, values);
  reporter.event('job.progress', {
    step,
    total_steps: lease.spec.hyperparameters.total_steps,
    'reward/mean': values['reward/mean'],
    loss: values.loss,
    step_seconds: values.step_seconds,
  });
  const gz = gzipSync(`${result.rollouts.map((r) => JSON.stringify(r)).join('\n')}\n`);
  await reporter.room(gz.byteLength, ctx.control.signal);
  reporter.rollouts(step, gz);
}

function logStep(ctx: JobContext, step: number, values: Record<string, number | null>): void {
  ctx.log.info('step', {
    step,
    reward: values['reward/mean'],
    loss: values.loss,
    s: Number(values.step_seconds?.toFixed(2)),
    ...(values['eval/pass@1'] !== undefined ? { 'eval/pass@1': values['eval/pass@1'] } : {}),
  });
}

// ---- checkpointing -----------------------------------------------------------------------------

/**
 * Saves the weights, the optimizer and the trainer state after `step` and queues the archive for
 * upload; each step is checkpointed once (a pause on a checkpoint step reuses it). The upload
 * waits in the outbox until the metrics of every step up to `step` are stored.
 */
async function checkpoint(
  ctx: JobContext,
  job: PreparedJob,
  policy: LoadedPolicy,
  step: number,
  final: boolean,
): Promise<void> {
  const { reporter, lease } = ctx;
  if (reporter.hasCheckpoint(step) || policy.resumed?.step === step) return;
  const { spec, train } = job;
  const hp = spec.hyperparameters;
  const adapter = spec.model.adapter.type;
  const dir = join(ctx.workDir, 'ckpt-staging');
  const position = batchRows(step + 1, train.length, hp.prompts_per_step, spec.seed, hp.drop_last);
  await saveCheckpointFolder(dir, policy.model, policy.trainer, {
    format: 'cgrpo-checkpoint/1',
    step,
    total_steps: hp.total_steps,
    seed: spec.seed,
    adapter,
    base_model: spec.model.id,
    data: {
      epoch: position.epoch,
      batch_in_epoch: position.batchInEpoch,
      prompts_per_step: hp.prompts_per_step,
      rows: train.length,
    },
    rng: { kind: 'counter', seed: spec.seed },
  });
  const bytes = packFolder(dir);
  await reporter.room(bytes.byteLength, ctx.control.signal);
  reporter.checkpoint(step, bytes, {
    kind: adapter === 'lora' ? 'adapter' : 'full',
    final,
    metadata: { format: 'cgrpo-checkpoint/1', archive: 'tar', adapter, base_model: lease.spec.model.id },
  });
}

/** A periodic checkpoint that cannot be written only moves the resume point back. */
async function checkpointSafely(
  ctx: JobContext,
  job: PreparedJob,
  policy: LoadedPolicy,
  step: number,
): Promise<void> {
  try {
    await checkpoint(ctx, job, policy, step, false);
  } catch (e) {
    if (ctx.control.signal.aborted || (e instanceof ApiError && e.code === 'lease_lost')) throw e;
    ctx.log.warn('checkpoint failed; training continues', {
      step,
      error: e instanceof Error ? e.message : String(e),
    });
  }
}

/** Stops after `step` (cancel, pause or shutdown) with a checkpoint of it; the runner acks. */
async function stopAt(
  ctx: JobContext,
  job: PreparedJob,
  policy: LoadedPolicy,
  step: number,
  reason: StopReason,
): Promise<JobOutcome> {
  if (step >= 1) await checkpointSafely(ctx, job, policy, step);
  return { status: 'stopped', reason };
}

/**
 * The last step is done: the final checkpoint, delivered with every report before the job
 * completes. A cancel or pause that arrived meanwhile still wins (the job ends cancelled, or paused
 * with this final checkpoint as its resume point; resuming it completes at once).
 */
async function finish(
  ctx: JobContext,
  job: PreparedJob,
  policy: LoadedPolicy,
  lastValues: Record<string, number | null>,
): Promise<JobOutcome> {
  const { reporter, lease, control } = ctx;
  const total = job.spec.hyperparameters.total_steps;
  await checkpoint(ctx, job, policy, total, true);
  await reporter.drain(FINAL_DRAIN_MS);
  const finalId = policy.resumed?.step === total ? lease.resume_from?.id : reporter.checkpointOf(total)?.id;
  if (!finalId)
    throw new JobError('checkpoint_failed', `the final checkpoint (step ${total}) was not stored`, true);
  await control.poll();
  const late = control.stopRequest();
  if (late === 'cancel' || late === 'pause')
    return { status: 'stopped', reason: late, checkpointId: finalId };
  return {
    status: 'succeeded',
    finalCheckpointId: finalId,
    summary: {
      steps: total,
      final_checkpoint_id: finalId,
      'reward/mean': lastValues['reward/mean'] ?? null,
      'eval/pass@1': lastValues['eval/pass@1'] ?? null,
    },
  };
}
