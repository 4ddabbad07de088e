// The algorithm's knobs in one object, with the defaults of docs/critique-grpo.md (§4, §8) and the
// GRPO presets of §3. Job specs use snake_case names; `fromHyperparameters` (hyperparameters.ts)
// maps them onto this shape.

export type Algorithm = 'critique-grpo' | 'grpo';
export type AdvantageNorm = 'mean' | 'meanStd';
export type LossAggregation = 'sumOverMaxLen' | 'tokenMean' | 'seqMeanTokenMean' | 'paperWeighted';
export type RefineTrigger = 'allIncorrect' | 'always';
/** How the admitted refinement is chosen among the preferred class: paper = random, code = first. */
export type RefinementSelection = 'random' | 'first';
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
  /** k: refinements admitted into a triggered group. */
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
  /** Clamp of the k3 estimate to [−klClamp, klClamp] (verl: 10). Null = no clamp. */
  klClamp: number | null;
  shaping: ShapingSpec;
  /** DAPO overlong shaping: L_cache. Null = off. */
  overlongBuffer: number | null;
  /** DAPO dynamic sampling: drop groups with uniform rewards and sample more prompts. */
  dynamicSampling: boolean;
  /** Cap on extra sampling rounds per step under dynamic sampling. */
  dynamicSamplingMaxRounds: number;
}

export const DEFAULT_SHAPING: ShapingSpec = { expression: 'p / (p + gamma)', params: { gamma: 0.1 } };

/** Critique-GRPO as the paper describes it, with the choices of §8. */
export const CRITIQUE_GRPO_DEFAULTS: Readonly<AlgoConfig> = Object.freeze({
  algorithm: 'critique-grpo',
  groupSize: 7,
  refinementsPerGroup: 1,
  refineTrigger: 'allIncorrect',
  refinementSelection: 'random',
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
  shaping: DEFAULT_SHAPING,
  overlongBuffer: null,
  dynamicSampling: false,
  dynamicSamplingMaxRounds: 4,
} satisfies AlgoConfig);

/** GRPO defaults: the critique-grpo knobs with refinements off, Dr.GRPO-style objective. */
export const GRPO_DEFAULTS: Readonly<AlgoConfig> = Object.freeze({
  ...CRITIQUE_GRPO_DEFAULTS,
  algorithm: 'grpo',
  groupSize: 8,
  refinementsPerGroup: 0,
  clipInitial: true,
  entropyCoef: 0,
} satisfies AlgoConfig);

/** §3 presets: what each changes relative to GRPO_DEFAULTS. */
export const GRPO_PRESETS: Readonly<Record<GrpoPreset, Partial<AlgoConfig>>> = Object.freeze({
  deepseekmath: {
    advantageNorm: 'meanStd',
    clipInitial: true,
    clip: { epsLow: 0.2, epsHigh: 0.2, dualClip: null },
    lossAggregation: 'seqMeanTokenMean',
    klCoef: 0.04,
    klClamp: null,
  },
  'verl-r1': {
    groupSize: 8,
    advantageNorm: 'meanStd',
    clipInitial: true,
    clip: { epsLow: 0.2, epsHigh: 0.2, dualClip: 3 },
    lossAggregation: 'tokenMean',
    klCoef: 0.001,
    klClamp: 10,
  },
  'dr-grpo': {
    advantageNorm: 'mean',
    clipInitial: true,
    clip: { epsLow: 0.2, epsHigh: 0.2, dualClip: null },
    lossAggregation: 'sumOverMaxLen',
    klCoef: 0,
  },
  dapo: {
    groupSize: 16,
    advantageNorm: 'meanStd',
    clipInitial: true,
    clip: { epsLow: 0.2, epsHigh: 0.28, dualClip: null },
    lossAggregation: 'tokenMean',
    klCoef: 0,
    overlongBuffer: 4096,
    dynamicSampling: true,
  },
});

/** Defaults for an algorithm, a preset on top (grpo only), then explicit overrides on top. */
export function resolveAlgoConfig(
  algorithm: Algorithm,
  overrides: Partial<AlgoConfig> = {},
  preset?: GrpoPreset,
): AlgoConfig {
  if (preset && algorithm !== 'grpo') {
    throw new Error(`preset '${preset}' applies to algorithm 'grpo' only, not '${algorithm}'`);
  }
  const base = algorithm === 'grpo' ? GRPO_DEFAULTS : CRITIQUE_GRPO_DEFAULTS;
  const merged: AlgoConfig = {
    ...base,
    ...(preset ? GRPO_PRESETS[preset] : {}),
    ...overrides,
    algorithm,
  };
  merged.clip = { ...base.clip, ...(preset ? GRPO_PRESETS[preset].clip : {}), ...overrides.clip };
  merged.shaping = overrides.shaping ?? base.shaping;
  if (algorithm === 'grpo') merged.refinementsPerGroup = 0;
  return merged;
}
