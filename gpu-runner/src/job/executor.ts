// The job executor: resolve model, datasets and plugins, resume from the latest checkpoint when
// there is one, run the training loop, evaluate, checkpoint, and stop at a safe point when asked.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { fromHyperparameters } from '../algo/config';
import { ApiError } from '../api-client';
import { createEngine, type Engine } from '../engine';
import { CausalLM, type ModelTrainer } from '../model/model';
import { generate } from '../rollout/generate';
import {
  fetchCheckpoint,
  packFolder,
  restoreOptimizer,
  saveCheckpointFolder,
  type TrainerState,
  uploadCheckpoint,
} from './checkpoint';
import { type Example, loadDataset } from './dataset';
import { critiqueGrpoLoss } from './loss-graph';
import { fetchModelArtifact, resolveModelDir } from './model-store';
import { type JobPlugins, type PluginHostOptions, type PolicyGenerate, resolvePlugins } from './plugins';
import { batchRows, streamSeed, TrainingLoop } from './train';
import { type JobContext, JobError, type JobOutcome, type StopReason } from './types';

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

async function run(ctx: JobContext, host: PluginHostOptions, own: Owned): Promise<JobOutcome> {
  const { lease, api, reporter, control, log } = ctx;
  const spec = lease.spec;
  const hp = spec.hyperparameters;
  const modelDir = spec.model.id.startsWith('artifact://')
    ? await fetchModelArtifact(
        spec.model.id,
        (path) => api.download(path),
        join(dirname(ctx.workDir), 'model-cache'),
        log,
      )
    : resolveModelDir(spec.model.id, ctx.modelDirs);
  // builtin:self critiques with the policy: one generation at a time (they share the KV cache),
  // in call order, each with its own seeded stream
  let policy: CausalLM | null = null;
  let loopRef: TrainingLoop | null = null;
  let selfStep = -1;
  let selfCalls = 0;
  let queue: Promise<unknown> = Promise.resolve();
  const policyGenerate: PolicyGenerate = (messages, o) => {
    // seeded by (step, call within the step), so a resumed job critiques exactly as before
    const step = loopRef?.currentStep ?? 0;
    if (step !== selfStep) {
      selfStep = step;
      selfCalls = 0;
    }
    const call = selfCalls++;
    const next = queue.then(async () => {
      if (!policy) throw new Error('the policy model is not loaded yet');
      const text = policy.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
      const ids = policy.tokenizer.encode(text).slice(-hp.max_prompt_tokens);
      const [c] = await generate(policy, [ids], {
        maxNewTokens: o.max_tokens,
        temperature: o.temperature,
        topP: o.top_p,
        seed: streamSeed(spec.seed, 'self-critic', step, call),
      });
      return c.text;
    });
    queue = next.catch(() => undefined);
    return next;
  };
  const plugins = await resolvePlugins(spec, {
    ...host,
    resolved: lease.plugins,
    download: (path) => api.download(path),
    generate: policyGenerate,
    log,
  });
  own.plugins = plugins;
  if (plugins.sandboxed.length)
    reporter.event('job.progress', { phase: 'plugins', sandboxed: plugins.sandboxed });
  // a published shaping plugin's expression replaces the spec's (it is compiled into the loss graph)
  const algo = fromHyperparameters(hp, spec.algorithm, plugins.shaping ?? spec.shaping?.config);
  const train = await loadDataset(spec.datasets.train, api, 'datasets.train');
  const validation: Example[] | null = spec.datasets.validation
    ? await loadDataset(spec.datasets.validation, api, 'datasets.validation')
    : null;
  batchRows(1, train.length, hp.prompts_per_step, spec.seed, hp.drop_last); // fails early if too small

  // resume: the latest complete checkpoint of an earlier attempt
  let resumeDir: string | null = null;
  let resumed: TrainerState | null = null;
  if (lease.resume_from) {
    resumeDir = join(ctx.workDir, 'resume');
    resumed = await fetchCheckpoint(
      api,
      lease.job_id,
      lease.resume_from,
      join(ctx.workDir, 'checkpoints'),
      resumeDir,
    );
    log.info('resuming', { from_step: resumed.step, checkpoint: lease.resume_from.id });
  }

  const engine = await createEngine({ device: ctx.device === 'auto' ? 'auto' : ctx.device });
  own.engine = engine; // closed even when loading the model fails
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
  policy = model;
  const schedule =
    hp.lr_schedule === 'constant'
      ? { kind: 'constant' as const, lr: hp.learning_rate, warmupSteps: hp.warmup_steps }
      : {
          kind: hp.lr_schedule,
          lr: hp.learning_rate,
          warmupSteps: hp.warmup_steps,
          totalSteps: hp.total_steps * hp.mini_batches_per_step * hp.epochs_per_step,
        };
  const trainer: ModelTrainer = await model.trainer({
    mode: adapter.type,
    loss: critiqueGrpoLoss(algo),
    temperature: hp.temperature,
    optimizer: {
      lr: schedule,
      beta1: hp.adam_beta1,
      beta2: hp.adam_beta2,
      eps: hp.adam_eps,
      weightDecay: hp.weight_decay,
      ...(hp.max_grad_norm > 0 ? { maxGradNorm: hp.max_grad_norm } : {}),
    },
  });
  if (resumeDir) await restoreOptimizer(resumeDir, trainer);

  // the KL term's reference policy: the base model as loaded, frozen (never trained, never resumed)
  let reference: CausalLM | null = null;
  if (algo.klCoef > 0) {
    reference = await CausalLM.load(modelDir, { engine });
    own.reference = reference;
  }
  const loop = new TrainingLoop(spec, algo, model, trainer, plugins, train, reference);
  loopRef = loop;
  const firstStep = (resumed?.step ?? 0) + 1;
  const alreadyStored = lease.last_step ?? 0;
  let lastCheckpoint: string | undefined;
  let lastValues: Record<string, number | null> = {};
  reporter.event('job.progress', {
    phase: 'started',
    step: firstStep - 1,
    total_steps: hp.total_steps,
    resumed_from: resumed?.step ?? null,
  });

  const checkpoint = async (step: number, final: boolean): Promise<string> => {
    // a checkpoint becomes the resume point only after the metrics up to its step are stored:
    // a later attempt starts after it and never reports those steps again
    await reporter.drain(final ? 10 * 60_000 : 15_000);
    const dir = join(ctx.workDir, 'ckpt-staging');
    const position = batchRows(step + 1, train.length, hp.prompts_per_step, spec.seed, hp.drop_last);
    await saveCheckpointFolder(dir, model, trainer, {
      format: 'cgrpo-checkpoint/1',
      step,
      total_steps: hp.total_steps,
      seed: spec.seed,
      adapter: adapter.type,
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
    const up = await uploadCheckpoint(api, lease.job_id, lease.lease_id, bytes, {
      step,
      kind: adapter.type === 'lora' ? 'adapter' : 'full',
      final,
      metadata: {
        format: 'cgrpo-checkpoint/1',
        archive: 'tar',
        adapter: adapter.type,
        base_model: spec.model.id,
      },
    });
    mkdirSync(join(ctx.workDir, 'checkpoints'), { recursive: true });
    writeFileSync(join(ctx.workDir, 'checkpoints', `${up.id}.tar`), bytes);
    log.info('checkpoint uploaded', { step, id: up.id, bytes: up.size, final });
    return up.id;
  };

  let rolloutsSupported = true;
  const stop = async (step: number, reason: StopReason): Promise<JobOutcome> => {
    let id = lastCheckpoint;
    if (step >= firstStep) {
      try {
        id = await checkpoint(step, false);
      } catch (e) {
        if (control.signal.aborted) throw e;
        // the job still stops; a later attempt resumes from the previous checkpoint instead
        log.warn('checkpoint at stop failed', { step, error: e instanceof Error ? e.message : String(e) });
      }
    }
    return { status: 'stopped', reason, ...(id ? { checkpointId: id } : {}) };
  };

  for (let step = firstStep; step <= hp.total_steps; step++) {
    const pending = control.stopRequest();
    if (pending) return stop(step - 1, pending);
    if (control.signal.aborted) throw new JobError('lease_lost', 'lease lost', true);
    control.progress(step, `step ${step}/${hp.total_steps}`);
    const result = await loop.step(step);
    const values = { ...result.values };
    const evalDue =
      validation !== null &&
      ((spec.evaluation.every_steps > 0 && step % spec.evaluation.every_steps === 0) ||
        (spec.evaluation.at_end && step === hp.total_steps));
    if (evalDue && validation) {
      const ev = await loop.evaluate(validation, step);
      Object.assign(values, ev);
      if (step > alreadyStored) reporter.event('job.evaluated', { step, ...ev });
    }
    lastValues = values;
    if (step > alreadyStored) {
      reporter.metric(step, values);
      reporter.event('job.progress', {
        step,
        total_steps: hp.total_steps,
        'reward/mean': values['reward/mean'],
        loss: values.loss,
        step_seconds: values.step_seconds,
      });
      if (rolloutsSupported) {
        const gz = gzipSync(`${result.rollouts.map((r) => JSON.stringify(r)).join('\n')}\n`);
        try {
          await api.rollouts(lease.job_id, lease.lease_id, step, gz);
        } catch (e) {
          if (e instanceof ApiError && (e.status === 404 || e.status === 405)) {
            rolloutsSupported = false;
            log.warn('this API stores no rollouts (no rollout route); rollout upload is off for this job');
          } else
            log.warn('rollout upload failed for this step', {
              step,
              error: e instanceof Error ? e.message : String(e),
            });
        }
      }
    }
    log.info('step', {
      step,
      reward: values['reward/mean'],
      loss: values.loss,
      s: Number(values.step_seconds?.toFixed(2)),
      ...(values['eval/pass@1'] !== undefined ? { 'eval/pass@1': values['eval/pass@1'] } : {}),
    });
    const last = step === hp.total_steps;
    if (!last && spec.checkpoint_every > 0 && step % spec.checkpoint_every === 0) {
      // a periodic checkpoint that cannot be stored only moves the resume point back
      try {
        lastCheckpoint = await checkpoint(step, false);
      } catch (e) {
        if (control.signal.aborted || (e instanceof ApiError && e.code === 'lease_lost')) throw e;
        log.warn('checkpoint failed; training continues', {
          step,
          error: e instanceof Error ? e.message : String(e),
        });
      }
    }
    if (!last) {
      const req = control.stopRequest();
      if (req) return stop(step, req);
    }
  }
  const finalId = await checkpoint(hp.total_steps, true);
  return {
    status: 'succeeded',
    finalCheckpointId: finalId,
    summary: {
      steps: hp.total_steps,
      final_checkpoint_id: finalId,
      'reward/mean': lastValues['reward/mean'] ?? null,
      'eval/pass@1': lastValues['eval/pass@1'] ?? null,
    },
  };
}
