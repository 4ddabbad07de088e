import { CRITIQUE_GRPO_DEFAULTS, GRPO_PRESETS, parseJobSpec } from '@cgrpo/contract';
import { describe, expect, it } from 'vitest';
import {
  fromHyperparameters,
  optimizerForJob,
  optimizerStepsPerRolloutStep,
  resolveAlgoConfig,
  scheduleForJob,
} from './config';
import { assembleGroup } from './group';
import { createRng } from './rng';

const minimal = { model: { id: 'Qwen/Qwen3-0.6B' }, datasets: { train: { uri: 'artifact://art_abc123' } } };

function spec(body: Record<string, unknown>) {
  const result = parseJobSpec({ ...minimal, ...body });
  if (!result.ok) throw new Error(JSON.stringify(result.fields));
  return result.spec;
}

describe('fromHyperparameters', () => {
  it('maps the critique-grpo defaults of the contract onto the paper defaults (§4, §8)', () => {
    const s = spec({});
    const config = fromHyperparameters(s.hyperparameters, s.algorithm, s.shaping?.config);
    expect(config).toMatchObject({
      algorithm: 'critique-grpo',
      groupSize: 7,
      refinementsPerGroup: 1,
      refineTrigger: 'allIncorrect',
      refinementSelection: 'preferCorrect',
      advantageNorm: 'mean',
      advantageEps: 1e-6,
      clipInitial: false,
      clip: { epsLow: 0.2, epsHigh: 0.2, dualClip: null },
      lossAggregation: 'sumOverMaxLen',
      maxResponseLength: 8192,
      maxPromptLength: 1024,
      entropyCoef: 0.001,
      klCoef: 0,
      klClamp: null,
      shaping: { expression: 'p / (p + gamma)', params: { gamma: 0.1 } },
      overlongBuffer: null,
      dynamicSampling: false,
      systemPrompt: 'You are a helpful assistant.',
    });
    expect(config.refinementPromptTemplate).toContain('{previous_solution}');
  });

  it.each(GRPO_PRESETS)(
    'grpo preset %s resolves the same through the contract and resolveAlgoConfig',
    (preset) => {
      const s = spec({ algorithm: 'grpo', hyperparameters: { preset } });
      expect(fromHyperparameters(s.hyperparameters, 'grpo')).toEqual(resolveAlgoConfig('grpo', {}, preset));
    },
  );

  it('maps every snake_case choice', () => {
    const s = spec({
      hyperparameters: {
        refine_trigger: 'always',
        refinement_selection: 'random',
        advantage_norm: 'mean_std',
        loss_aggregation: 'paper_weighted',
        clip_initial: true,
        clip_eps_high: 0.28,
        dual_clip: 3,
        kl_coef: 0.01,
        kl_clamp: 10,
        overlong_buffer: { enabled: true, length: 512, penalty_factor: 0.5 },
      },
      shaping: { plugin: 'builtin:expression', config: { expression: 'p ^ alpha', params: { alpha: 0.5 } } },
    });
    const config = fromHyperparameters(s.hyperparameters, s.algorithm, s.shaping?.config);
    expect(config).toMatchObject({
      refineTrigger: 'always',
      refinementSelection: 'random',
      advantageNorm: 'meanStd',
      lossAggregation: 'paperWeighted',
      clipInitial: true,
      clip: { epsLow: 0.2, epsHigh: 0.28, dualClip: 3 },
      klCoef: 0.01,
      klClamp: 10,
      overlongBuffer: 512,
      overlongPenaltyFactor: 0.5,
      shaping: { expression: 'p ^ alpha', params: { alpha: 0.5 } },
    });
  });

  it('grpo is a strict subset: no refinements, presets only for grpo', () => {
    const s = spec({ algorithm: 'grpo' });
    const config = fromHyperparameters(s.hyperparameters, 'grpo');
    expect(config.refinementsPerGroup).toBe(0);
    expect(resolveAlgoConfig('grpo', { refinementsPerGroup: 3 }).refinementsPerGroup).toBe(0);
    expect(() => resolveAlgoConfig('critique-grpo', {}, 'dapo')).toThrow(/applies to algorithm 'grpo' only/);
    expect(assembleGroup({ initialRewards: [0, 0, 0] }, config, createRng(1)).triggered).toBe(false);
  });

  it('overrides win over presets', () => {
    const dapo = resolveAlgoConfig('grpo', { clip: { epsLow: 0.1, epsHigh: 0.3, dualClip: null } }, 'dapo');
    expect(dapo).toMatchObject({
      lossAggregation: 'tokenMean',
      dynamicSampling: true,
      overlongBuffer: 4096,
      groupSize: 16,
    });
    expect(dapo.clip).toEqual({ epsLow: 0.1, epsHigh: 0.3, dualClip: null });
    expect(resolveAlgoConfig('grpo', {}, 'verl-r1')).toMatchObject({
      klClamp: 10,
      klCoef: 0.001,
      lossAggregation: 'tokenMean',
    });
  });
});

describe('scheduleForJob: warmup and total in one unit', () => {
  const knobs = {
    learning_rate: 1e-6,
    lr_schedule: 'cosine' as const,
    warmup_steps: 20,
    total_steps: 100,
    mini_batches_per_step: 16,
    epochs_per_step: 2,
  };
  it('scales rollout-step warmup and total by mini-batches × epochs (optimizer steps)', () => {
    expect(optimizerStepsPerRolloutStep(knobs)).toBe(32);
    expect(scheduleForJob(knobs)).toEqual({ kind: 'cosine', lr: 1e-6, warmupSteps: 640, totalSteps: 3200 });
  });
  it('DAPO: 20 warmup rollout steps stay 20 rollout steps (320 optimizer steps of 16 mini-batches)', () => {
    const s = scheduleForJob({ ...knobs, lr_schedule: 'linear', epochs_per_step: 1 });
    expect(s).toEqual({ kind: 'linear', lr: 1e-6, warmupSteps: 320, totalSteps: 1600 });
    expect((s.warmupSteps ?? 0) / optimizerStepsPerRolloutStep({ ...knobs, epochs_per_step: 1 })).toBe(20);
  });
  it('constant keeps its warmup in the same unit', () => {
    expect(
      scheduleForJob({ ...knobs, lr_schedule: 'constant', mini_batches_per_step: 2, epochs_per_step: 1 }),
    ).toEqual({
      kind: 'constant',
      lr: 1e-6,
      warmupSteps: 40,
    });
  });
  it("maps refinement_selection 'first_correct' to firstCorrect", () => {
    const hp = { ...CRITIQUE_GRPO_DEFAULTS, refinement_selection: 'first_correct' as const };
    expect(fromHyperparameters(hp, 'critique-grpo').refinementSelection).toBe('firstCorrect');
  });
});

describe('optimizerForJob', () => {
  const hp = {
    ...CRITIQUE_GRPO_DEFAULTS,
    learning_rate: 3e-5,
    lr_schedule: 'constant' as const,
    warmup_steps: 2,
    mini_batches_per_step: 2,
    epochs_per_step: 1,
    adam_beta2: 0.98,
  };
  it("is the job's schedule (in optimizer steps), betas, eps, decay and clip", () => {
    expect(optimizerForJob({ ...hp, max_grad_norm: 0.5 })).toEqual({
      lr: { kind: 'constant', lr: 3e-5, warmupSteps: 4 },
      beta1: 0.9,
      beta2: 0.98,
      eps: 1e-8,
      weightDecay: 0.01,
      maxGradNorm: 0.5,
    });
  });
  it('max_grad_norm 0 means no clipping, not a clip to 0', () => {
    expect(optimizerForJob({ ...hp, max_grad_norm: 0 })).not.toHaveProperty('maxGradNorm');
  });
});
