// The algorithm's knobs in one camelCase object. The job contract (snake_case hyperparameters,
// defaults and GRPO presets of docs/critique-grpo.md §3, §4, §8) is the single source of the
// values; `fromHyperparameters` maps a resolved spec's hyperparameters onto this shape.
import {
  CRITIQUE_GRPO_DEFAULTS as CONTRACT_DEFAULTS,
  DEFAULT_GRPO_PRESET,
  DEFAULT_SHAPING,
  GRPO_PRESET_VALUES,
  type Hyperparameters,
} from '@cgrpo/contract';
import type { AdamWConfig, Schedule } from '../engine/optim';

export type Algorithm = 'critique-grpo' | 'grpo';
export type AdvantageNorm = 'mean' | 'meanStd';
export type LossAggregation = 'sumOverMaxLen' | 'tokenMean' | 'seqMeanTokenMean' | 'paperWeighted';
export type RefineTrigger = 'allIncorrect' | 'always';
/**
 * Which refinements join the group (§1.2 step 8): `preferCorrect` = correct ones first, random
 * within a class (paper, default); `random` = ignore correctness (the paper's ablation);
 * `firstCorrect` = correct ones first in sample order (the released code).
 */
export type RefinementSelection = 'preferCorrect' | 'random' | 'firstCorrect';
export type GrpoPreset = 'deepseekmath' | 'verl-r1' | 'dr-grpo' | 'dapo';

export interface ClipConfig {
  /** Lower clip range: ratios below 1 − epsLow stop getting gradient when that lowers the loss. */
  epsLow: number;
  /** Upper clip range (DAPO "clip-higher" sets it above epsLow). */
  epsHigh: number;
  /** Dual clip constant c > 1: for A < 0 the clipped loss is capped at −A·c (verl). Null = off. */
  dualClip: number | null;
}

export interface ShapingSpec {
  expression: string;
  params: Record<string, number>;
}

export interface AlgoConfig {
  algorithm: Algorithm;
  /** n: initial responses sampled per prompt. */
  groupSize: number;
  /** k: refinements admitted into a triggered group (0 for grpo). */
  refinementsPerGroup: number;
  refineTrigger: RefineTrigger;
  refinementSelection: RefinementSelection;
  advantageNorm: AdvantageNorm;
  /** Added to the std in `meanStd` advantages. */
  advantageEps: number;
  /** Clip the importance ratio of initial (on-policy) tokens. The shaped term is never clipped. */
  clipInitial: boolean;
  clip: ClipConfig;
  lossAggregation: LossAggregation;
  /** L_max: maximum response length in tokens; the constant normaliser of sumOverMaxLen. */
  maxResponseLength: number;
  maxPromptLength: number;
  /** c_H: weight of the entropy bonus (L_H = −c_H · mean token entropy). */
  entropyCoef: number;
  /** β: weight of the per-token k3 KL to the reference model; 0 loads no reference model. */
  klCoef: number;
  /** Cap of the k3 estimate (verl: 10). Null = none. */
  klClamp: number | null;
  shaping: ShapingSpec;
  /** DAPO overlong shaping: L_cache in tokens. Null = off. */
  overlongBuffer: number | null;
  /** Multiplies the overlong penalty (1 = linear ramp to −1). */
  overlongPenaltyFactor: number;
  /** DAPO dynamic sampling: drop groups with uniform rewards and sample more prompts. */
  dynamicSampling: boolean;
  /** Cap on extra sampling rounds per step under dynamic sampling. */
  dynamicSamplingMaxRounds: number;
  systemPrompt: string;
  /** User message of a training prompt; `{question}` is the problem text. */
  promptTemplate: string;
  /** §1.4 template with `{question}`, `{previous_solution}`, `{critique}`. */
  refinementPromptTemplate: string;
}

const AGGREGATION = {
  sum_over_max_len: 'sumOverMaxLen',
  token_mean: 'tokenMean',
  seq_mean_token_mean: 'seqMeanTokenMean',
  paper_weighted: 'paperWeighted',
} as const satisfies Record<Hyperparameters['loss_aggregation'], LossAggregation>;

const SELECTION = {
  prefer_correct: 'preferCorrect',
  random: 'random',
  first_correct: 'firstCorrect',
} as const satisfies Record<Hyperparameters['refinement_selection'], RefinementSelection>;

function shapingSpecOf(config: Record<string, unknown> | undefined): ShapingSpec {
  const fallback = DEFAULT_SHAPING.config as unknown as ShapingSpec;
  const expression = typeof config?.expression === 'string' ? config.expression : fallback.expression;
  const params =
    config?.params && typeof config.params === 'object'
      ? (config.params as Record<string, number>)
      : config?.expression !== undefined
        ? {}
        : fallback.params;
  return { expression, params: { ...params } };
}

/**
 * A resolved job's hyperparameters (snake_case, defaults and preset filled in by the contract's
 * `parseJobSpec`) as the algorithm's config. `shapingConfig` is the job's `shaping.config`
 * (`{expression, params}`); omitted, the default `p / (p + gamma)` with γ = 0.1.
 */
export function fromHyperparameters(
  hp: Hyperparameters,
  jobAlgorithm: Algorithm | 'sft' | 'evaluate',
  shapingConfig?: Record<string, unknown>,
): AlgoConfig {
  // SFT and evaluation jobs train no RL objective; their config is GRPO's (never used for a loss)
  const algorithm: Algorithm = jobAlgorithm === 'critique-grpo' ? 'critique-grpo' : 'grpo';
  return {
    algorithm,
    groupSize: hp.group_size,
    refinementsPerGroup: algorithm === 'grpo' ? 0 : hp.refinements_per_group,
    refineTrigger: hp.refine_trigger === 'all_incorrect' ? 'allIncorrect' : 'always',
    refinementSelection: SELECTION[hp.refinement_selection],
    advantageNorm: hp.advantage_norm === 'mean_std' ? 'meanStd' : 'mean',
    advantageEps: hp.advantage_eps,
    clipInitial: hp.clip_initial,
    clip: { epsLow: hp.clip_eps_low, epsHigh: hp.clip_eps_high, dualClip: hp.dual_clip },
    lossAggregation: AGGREGATION[hp.loss_aggregation],
    maxResponseLength: hp.max_response_tokens,
    maxPromptLength: hp.max_prompt_tokens,
    entropyCoef: hp.entropy_coef,
    klCoef: hp.kl_coef,
    klClamp: hp.kl_clamp,
    shaping: shapingSpecOf(shapingConfig),
    overlongBuffer: hp.overlong_buffer.enabled ? hp.overlong_buffer.length : null,
    overlongPenaltyFactor: hp.overlong_buffer.penalty_factor,
    dynamicSampling: hp.dynamic_sampling.enabled,
    dynamicSamplingMaxRounds: hp.dynamic_sampling.max_extra_rounds,
    systemPrompt: hp.system_prompt,
    promptTemplate: hp.prompt_template,
    refinementPromptTemplate: hp.refinement_prompt_template,
  };
}

/**
 * The config of an algorithm with the contract's defaults: for grpo a preset (default dr-grpo,
 * as the contract fills it) on top, then explicit overrides on top of that.
 */
export function resolveAlgoConfig(
  algorithm: Algorithm,
  overrides: Partial<AlgoConfig> = {},
  preset?: GrpoPreset,
): AlgoConfig {
  if (preset && algorithm !== 'grpo') {
    throw new Error(`preset '${preset}' applies to algorithm 'grpo' only, not '${algorithm}'`);
  }
  const hp: Hyperparameters = {
    ...CONTRACT_DEFAULTS,
    ...(algorithm === 'grpo' ? GRPO_PRESET_VALUES[preset ?? DEFAULT_GRPO_PRESET] : {}),
  };
  const base = fromHyperparameters(hp, algorithm);
  const merged: AlgoConfig = { ...base, ...overrides, algorithm, clip: { ...base.clip, ...overrides.clip } };
  if (algorithm === 'grpo') merged.refinementsPerGroup = 0;
  return merged;
}

type ScheduleKnobs = Pick<
  Hyperparameters,
  | 'learning_rate'
  | 'lr_schedule'
  | 'warmup_steps'
  | 'total_steps'
  | 'mini_batches_per_step'
  | 'epochs_per_step'
>;

/** Optimizer steps one rollout step takes: one per mini-batch per epoch. A mini-batch that ends up
 *  with no sequences still counts (the trainer takes a zero-gradient step for it), so this number
 *  never depends on what the step sampled. */
export function optimizerStepsPerRolloutStep(
  hp: Pick<ScheduleKnobs, 'mini_batches_per_step' | 'epochs_per_step'>,
): number {
  return hp.mini_batches_per_step * hp.epochs_per_step;
}

/**
 * The learning-rate schedule of a job in optimizer steps. The spec counts `warmup_steps` and
 * `total_steps` in rollout steps; the scheduler steps once per optimizer step, so both are scaled
 * by the same optimizerStepsPerRolloutStep (DAPO: 20 warmup rollout steps × 16 mini-batches = 320
 * optimizer steps of warmup, out of total_steps × 16).
 */
export function scheduleForJob(hp: ScheduleKnobs): Schedule {
  const per = optimizerStepsPerRolloutStep(hp);
  const warmupSteps = hp.warmup_steps * per;
  if (hp.lr_schedule === 'constant') return { kind: 'constant', lr: hp.learning_rate, warmupSteps };
  return { kind: hp.lr_schedule, lr: hp.learning_rate, warmupSteps, totalSteps: hp.total_steps * per };
}

/** A job's AdamW settings: its schedule in optimizer steps, its betas, eps and decay, and its
 *  gradient-norm clip (0 = none). What the runner trains with; the learning benches use it too. */
export function optimizerForJob(
  hp: ScheduleKnobs &
    Pick<Hyperparameters, 'adam_beta1' | 'adam_beta2' | 'adam_eps' | 'weight_decay' | 'max_grad_norm'>,
): AdamWConfig {
  return {
    lr: scheduleForJob(hp),
    beta1: hp.adam_beta1,
    beta2: hp.adam_beta2,
    eps: hp.adam_eps,
    weightDecay: hp.weight_decay,
    ...(hp.max_grad_norm > 0 ? { maxGradNorm: hp.max_grad_norm } : {}),
  };
}
