import { z } from 'zod';
import { AlarmsSchema, BudgetsSchema } from './budgets';
import type { FieldError } from './errors';
import { fieldErrorsFromZod } from './errors';
import { PluginCapabilitySchema, PluginUseSchema } from './plugins';
import { bool, int, num, oneOf, str } from './zod-helpers';

// The job spec: what a user POSTs to /v1/jobs. `JobSpecInputSchema` is the request body (most
// fields optional); `resolveJobSpec` validates cross-field rules and fills every default, giving
// the immutable `JobSpec` the API stores and the runner executes. Defaults and knob names follow
// shared/design/critique-grpo.md §2–§4 and the choices of §8.

/**
 * `critique-grpo` and `grpo` train online with RL; `sft` trains on prompt/completion rows
 * (supervised fine-tuning, loss on completion tokens only); `evaluate` trains nothing and measures
 * a model or checkpoint on a dataset with the job's verifier.
 */
export const ALGORITHMS = ['critique-grpo', 'grpo', 'sft', 'evaluate'] as const;
export const RL_ALGORITHMS = ['critique-grpo', 'grpo'] as const;
export const AlgorithmSchema = oneOf(ALGORITHMS);
export type Algorithm = z.infer<typeof AlgorithmSchema>;

export const GRPO_PRESETS = ['deepseekmath', 'verl-r1', 'dr-grpo', 'dapo'] as const;
export const GrpoPresetSchema = oneOf(GRPO_PRESETS);
export type GrpoPreset = z.infer<typeof GrpoPresetSchema>;

export const DEFAULT_SYSTEM_PROMPT = 'You are a helpful assistant.';
export const DEFAULT_PROMPT_TEMPLATE =
  '{question}\n\nPlease reason step by step, and put your final answer within \\boxed{}.';
/** §1.4, in the project's own words: the question, the previous attempt, the critique, then what to do. */
export const DEFAULT_REFINEMENT_PROMPT_TEMPLATE = [
  'Question:',
  '{question}',
  '',
  'Previous Solution:',
  '{previous_solution}',
  '',
  'Critique:',
  '{critique}',
  '',
  'Write an improved solution to the question above.',
  '- Correct every error the critique points out, if it points out any.',
  '- Reason step by step.',
  '- Put the final answer within \\boxed{}.',
  '- Check that each issue raised in the critique is addressed before you finish.',
].join('\n');

// ---- hyperparameters --------------------------------------------------------------------------

export const DynamicSamplingSchema = z.strictObject({
  /** DAPO: drop groups whose rewards are all equal and sample more prompts to fill the batch. */
  enabled: bool(),
  /** Cap on the extra sampling rounds per step. */
  max_extra_rounds: int(0, 100),
});
export type DynamicSampling = z.infer<typeof DynamicSamplingSchema>;

export const OverlongBufferSchema = z.strictObject({
  /** DAPO overlong shaping added to the reward for responses longer than max_response_tokens − length. */
  enabled: bool(),
  /** L_cache in tokens. */
  length: int(1),
  /** Multiplies the shaping term (1 = the paper's linear ramp to −1). */
  penalty_factor: num(0),
});
export type OverlongBuffer = z.infer<typeof OverlongBufferSchema>;

export const HyperparametersSchema = z
  .strictObject({
    /** B: questions drawn per training step (§1.2.1). */
    prompts_per_step: int(1, 65_536),
    /** n: initial responses sampled per question. */
    group_size: int(2, 1024),
    /** k: refinements admitted into a triggered question's group (critique-grpo only). */
    refinements_per_group: int(1, 1024),
    /** Which questions get critiques and refinements (§8.1). */
    refine_trigger: oneOf(['all_incorrect', 'always']),
    /** §1.2.8: prefer a correct refinement (default) or take a random one (the paper's ablation). */
    refinement_selection: oneOf(['prefer_correct', 'random', 'first_correct']),
    /**
     * When the critic fails on a response: `ground-truth` writes the ground-truth critique instead
     * (what the released code does), `drop` skips that refinement. Counted once as a critic failure.
     */
    critic_fallback: oneOf(['ground-truth', 'drop']),
    system_prompt: str(0, 20_000),
    /** The user message built from a dataset row; `{question}` is replaced by the prompt field. */
    prompt_template: str(1, 20_000),
    /** §1.4; placeholders `{question}`, `{previous_solution}`, `{critique}`. */
    refinement_prompt_template: str(1, 20_000),
    /** §2.1 / §8.3. */
    advantage_norm: oneOf(['mean', 'mean_std']),
    advantage_eps: num(0, 1),
    /** §2.2 / §8.2: PPO clip on initial-response tokens. The shaped refinement term is never clipped. */
    clip_initial: bool(),
    clip_eps_low: num(0, 1),
    clip_eps_high: num(0, 10),
    /** verl dual clip c for A < 0 (e.g. 3), or null for none. */
    dual_clip: num(1, undefined, { exclusiveMin: true }).nullable(),
    /** §2.5 / §8.4. */
    loss_aggregation: oneOf(['sum_over_max_len', 'token_mean', 'seq_mean_token_mean', 'paper_weighted']),
    /** c_H (§2.4). */
    entropy_coef: num(0, 1),
    /** β of the k3 KL to the initial weights (§2.4, §3); 0 loads no reference model. */
    kl_coef: num(0, 10),
    /** Clamp of the per-token k3 KL estimate to [-c, c] (verl-r1 uses 10), or null for none. */
    kl_clamp: num(0, undefined, { exclusiveMin: true }).nullable(),
    learning_rate: num(0, 1, { exclusiveMin: true }),
    lr_schedule: oneOf(['constant', 'linear', 'cosine']),
    warmup_steps: int(0),
    adam_beta1: num(0, 1),
    adam_beta2: num(0, 1),
    adam_eps: num(0, 1, { exclusiveMin: true }),
    weight_decay: num(0, 1),
    /** Gradient-norm clip; 0 disables it. */
    max_grad_norm: num(0),
    /** Optimizer steps per rollout step: the step's sequences are split into this many mini-batches. */
    mini_batches_per_step: int(1, 4096),
    /** Passes over the step's rollouts (DeepSeekMath's μ). */
    epochs_per_step: int(1, 64),
    /** Sequences per forward/backward pass (gradient accumulation); null lets the runner choose. */
    micro_batch_size: int(1, 65_536).nullable(),
    max_prompt_tokens: int(1, 131_072),
    /**
     * Budget of the refinement prompt (system, question, previous solution, critique, template):
     * when over, the previous solution is shortened in its middle with a marker; null = large
     * enough for max_prompt_tokens + max_response_tokens + the critique (max_critique_tokens).
     */
    max_refinement_prompt_tokens: int(1, 262_144).nullable(),
    /** Longest critique kept in a refinement prompt, in tokens (longer ones are cut in the middle). */
    max_critique_tokens: int(1, 131_072),
    /** L_max (§2.5). */
    max_response_tokens: int(1, 131_072),
    temperature: num(0, 10, { exclusiveMin: true }),
    top_p: num(0, 1, { exclusiveMin: true }),
    /** 0 = off. */
    top_k: int(0),
    total_steps: int(1, 1_000_000),
    /** Drop the incomplete final batch of an epoch (§1.2.1). */
    drop_last: bool(),
    /** GRPO only: the preset whose values filled the knobs the user did not set. */
    preset: GrpoPresetSchema.nullable(),
    dynamic_sampling: DynamicSamplingSchema,
    overlong_buffer: OverlongBufferSchema,
    /** Share of verifier/critic calls per step allowed to fail (missing value + reason) before the job fails. */
    max_plugin_failure_ratio: num(0, 1),
  })
  .meta({ id: 'Hyperparameters', description: 'Every knob of the training loop, defaults filled in.' });
export type Hyperparameters = z.infer<typeof HyperparametersSchema>;

export const HyperparametersInputSchema = HyperparametersSchema.partial()
  .extend({
    dynamic_sampling: DynamicSamplingSchema.partial().optional(),
    overlong_buffer: OverlongBufferSchema.partial().optional(),
  })
  .meta({
    id: 'HyperparametersInput',
    description: 'Any subset of the hyperparameters; the rest are defaults.',
  });
export type HyperparametersInput = z.infer<typeof HyperparametersInputSchema>;

/** Critique-GRPO defaults (critique-grpo.md §4 and §8). */
export const CRITIQUE_GRPO_DEFAULTS: Hyperparameters = {
  prompts_per_step: 128,
  group_size: 7,
  refinements_per_group: 1,
  refine_trigger: 'all_incorrect',
  refinement_selection: 'prefer_correct',
  critic_fallback: 'ground-truth',
  system_prompt: DEFAULT_SYSTEM_PROMPT,
  prompt_template: DEFAULT_PROMPT_TEMPLATE,
  refinement_prompt_template: DEFAULT_REFINEMENT_PROMPT_TEMPLATE,
  advantage_norm: 'mean',
  advantage_eps: 1e-6,
  clip_initial: false,
  clip_eps_low: 0.2,
  clip_eps_high: 0.2,
  dual_clip: null,
  loss_aggregation: 'sum_over_max_len',
  entropy_coef: 0.001,
  kl_coef: 0,
  kl_clamp: null,
  learning_rate: 1e-6,
  lr_schedule: 'constant',
  warmup_steps: 0,
  adam_beta1: 0.9,
  adam_beta2: 0.999,
  adam_eps: 1e-8,
  weight_decay: 0.01,
  max_grad_norm: 1.0,
  mini_batches_per_step: 2,
  epochs_per_step: 1,
  micro_batch_size: null,
  max_prompt_tokens: 1024,
  max_refinement_prompt_tokens: null,
  max_critique_tokens: 2048,
  max_response_tokens: 8192,
  temperature: 1.0,
  top_p: 1.0,
  top_k: 0,
  total_steps: 400,
  drop_last: true,
  preset: null,
  dynamic_sampling: { enabled: false, max_extra_rounds: 3 },
  overlong_buffer: { enabled: false, length: 4096, penalty_factor: 1.0 },
  max_plugin_failure_ratio: 0.1,
};

/** The GRPO preset used when `algorithm: 'grpo'` names none: the paper's Dr.GRPO baseline. */
export const DEFAULT_GRPO_PRESET: GrpoPreset = 'dr-grpo';

/** The values each GRPO preset sets (critique-grpo.md §3); everything else keeps its default. */
export const GRPO_PRESET_VALUES: Record<GrpoPreset, Partial<Hyperparameters>> = {
  deepseekmath: {
    advantage_norm: 'mean_std',
    clip_initial: true,
    clip_eps_low: 0.2,
    clip_eps_high: 0.2,
    loss_aggregation: 'seq_mean_token_mean',
    kl_coef: 0.04,
    entropy_coef: 0,
  },
  'verl-r1': {
    group_size: 8,
    advantage_norm: 'mean_std',
    clip_initial: true,
    clip_eps_low: 0.2,
    clip_eps_high: 0.2,
    loss_aggregation: 'token_mean',
    kl_coef: 0.001,
    kl_clamp: 10,
    temperature: 1.0,
    entropy_coef: 0,
  },
  'dr-grpo': {
    advantage_norm: 'mean',
    clip_initial: true,
    clip_eps_low: 0.2,
    clip_eps_high: 0.2,
    loss_aggregation: 'sum_over_max_len',
    kl_coef: 0,
    entropy_coef: 0,
  },
  dapo: {
    group_size: 16,
    prompts_per_step: 512,
    mini_batches_per_step: 16,
    warmup_steps: 20,
    advantage_norm: 'mean_std',
    clip_initial: true,
    clip_eps_low: 0.2,
    clip_eps_high: 0.28,
    loss_aggregation: 'token_mean',
    kl_coef: 0,
    dynamic_sampling: { enabled: true, max_extra_rounds: 3 },
    overlong_buffer: { enabled: true, length: 4096, penalty_factor: 1.0 },
    entropy_coef: 0,
  },
};

/**
 * SFT jobs start from these instead of the RL defaults: a learning rate for supervised updates,
 * batches of 16 rows, 100 steps. Every other knob keeps its default (RL-only knobs are unused).
 */
export const SFT_DEFAULTS: Partial<Hyperparameters> = {
  learning_rate: 1e-4,
  prompts_per_step: 16,
  total_steps: 100,
  mini_batches_per_step: 1,
  entropy_coef: 0,
  max_response_tokens: 1024,
};

/** Model ids of the form `checkpoint:<ckpt_id>` start from another job's checkpoint. */
export const CHECKPOINT_MODEL_PREFIX = 'checkpoint:';

/** Hyperparameters that only mean something for critique-grpo. */
const CRITIQUE_ONLY_KNOBS = [
  'refinements_per_group',
  'refine_trigger',
  'refinement_selection',
  'refinement_prompt_template',
  'critic_fallback',
  'max_refinement_prompt_tokens',
  'max_critique_tokens',
] as const satisfies readonly (keyof Hyperparameters)[];

// ---- the rest of the spec ---------------------------------------------------------------------

export const LoraAdapterSchema = z.strictObject({
  type: z.literal('lora'),
  rank: int(1, 4096).default(16),
  alpha: num(0, undefined, { exclusiveMin: true }).default(32),
  dropout: num(0, 1).default(0),
  target_modules: z
    .array(str(1, 200))
    .min(1, 'must name at least one module')
    .default(['q_proj', 'k_proj', 'v_proj', 'o_proj']),
});
export const FullAdapterSchema = z.strictObject({ type: z.literal('full') });
export const AdapterSchema = z
  .discriminatedUnion('type', [LoraAdapterSchema, FullAdapterSchema], {
    error: "adapter.type must be 'lora' or 'full'",
  })
  .meta({ id: 'Adapter' });
export type Adapter = z.infer<typeof AdapterSchema>;

export const DEFAULT_ADAPTER: Adapter = {
  type: 'lora',
  rank: 16,
  alpha: 32,
  dropout: 0,
  target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
};

export const ModelSpecSchema = z
  .strictObject({
    /**
     * A Hugging Face style id resolved by the runner's model store (`Qwen/Qwen3-0.6B`), a local
     * path on the runner (`file:///models/x` or `/models/x`), or an uploaded artifact (`artifact://art_…`).
     */
    id: str(1, 1000),
    revision: str(1, 200).optional(),
    adapter: AdapterSchema.default(DEFAULT_ADAPTER),
  })
  .meta({ id: 'ModelSpec' });
export type ModelSpec = z.infer<typeof ModelSpecSchema>;

/** artifact://art_…, https://…, hf://datasets/<owner>/<name>/<file>, file:<path>. */
export const DATASET_URI_PATTERN = /^(artifact:\/\/art_[A-Za-z0-9]+|https?:\/\/\S+|hf:\/\/\S+|file:\S+)$/;

export const DatasetFieldsSchema = z.strictObject({
  /** Field of each JSONL row holding the question. */
  prompt: str(1, 200).default('prompt'),
  /** Field holding the reference answer the verifier compares against. */
  reference: str(1, 200).default('answer'),
  /** Optional field with a worked reference solution (for critics that use one, §8.7). */
  solution: str(1, 200).optional(),
  /** SFT jobs: the field holding the target completion (default 'completion'). */
  completion: str(1, 200).optional(),
});
export type DatasetFields = z.infer<typeof DatasetFieldsSchema>;

export const DatasetRefSchema = z
  .strictObject({
    uri: str(1, 2000).regex(
      DATASET_URI_PATTERN,
      "must be 'artifact://art_…', an http(s) URL, 'hf://datasets/<owner>/<name>/<file>' or 'file:<path>'",
    ),
    format: z.literal('jsonl', { error: "must be 'jsonl'" }).default('jsonl'),
    fields: DatasetFieldsSchema.default({ prompt: 'prompt', reference: 'answer' }),
    /** Use only the first N rows. */
    limit: int(1).optional(),
  })
  .meta({ id: 'DatasetRef' });
export type DatasetRef = z.infer<typeof DatasetRefSchema>;

export const DatasetsSchema = z.strictObject({
  train: DatasetRefSchema,
  validation: DatasetRefSchema.optional(),
});

export const EvaluationSchema = z
  .strictObject({
    /** Evaluate on the validation set every N steps; 0 = only at the end (if at_end). */
    every_steps: int(0).default(50),
    samples_per_prompt: int(1, 1024).default(1),
    /** 0 = greedy. */
    temperature: num(0, 10).default(0),
    top_p: num(0, 1, { exclusiveMin: true }).default(1),
    /** Evaluate on at most this many validation prompts (null = all). */
    max_prompts: int(1).nullable().default(500),
    at_end: bool().default(true),
  })
  .meta({ id: 'Evaluation' });
export type Evaluation = z.infer<typeof EvaluationSchema>;
export const DEFAULT_EVALUATION: Evaluation = {
  every_steps: 50,
  samples_per_prompt: 1,
  temperature: 0,
  top_p: 1,
  max_prompts: 500,
  at_end: true,
};

export const WEBHOOK_EVENT_TYPES = [
  'job.queued',
  'job.started',
  'job.checkpoint',
  'job.evaluated',
  'job.succeeded',
  'job.failed',
  'job.cancelled',
  'job.budget_reached',
  'job.alarm',
  'job.metrics_digest',
  'checkpoint.created',
] as const;
export const WebhookEventTypeSchema = oneOf(WEBHOOK_EVENT_TYPES);
export type WebhookEventType = z.infer<typeof WebhookEventTypeSchema>;
/** A job's own endpoint gets the `job.*` events unless it names others (`checkpoint.created` is opt-in). */
const DEFAULT_JOB_WEBHOOK_EVENTS = WEBHOOK_EVENT_TYPES.filter((t) => t.startsWith('job.'));

/** Steps per `job.metrics_digest` webhook when the spec does not say (docs/webhooks.md). */
export const DEFAULT_METRICS_DIGEST_EVERY_STEPS = 10;
export const MetricsDigestSchema = z
  .strictObject({
    /** Send a digest of the main metrics after every N steps; 0 = no digests. */
    every_steps: int(0, 100_000),
  })
  .meta({ id: 'MetricsDigest' });
export type MetricsDigest = z.infer<typeof MetricsDigestSchema>;

export const JobWebhookSchema = z
  .strictObject({
    url: z.url({ error: 'must be an absolute http(s) URL' }),
    events: z.array(WebhookEventTypeSchema).min(1).default(DEFAULT_JOB_WEBHOOK_EVENTS),
  })
  .meta({ id: 'JobWebhook' });
export type JobWebhook = z.infer<typeof JobWebhookSchema>;

/**
 * The chat endpoint a published plugin's `ctx.llm.chat` talks to, served by the runner: the plugin
 * sees neither the URL nor the token. Any OpenAI-compatible server (TGI, vLLM, llama.cpp, or
 * Hugging Face Inference Providers at https://router.huggingface.co/v1).
 */
export const JobLlmEndpointSchema = z
  .strictObject({
    endpoint_url: z.url({
      protocol: /^https?$/,
      error: 'must be the http(s) base URL of an OpenAI-compatible chat server',
    }),
    /** The served model name (vLLM, the router); TGI ignores it. */
    model: str(1, 500).optional(),
    /** Name of the environment variable on the runner holding the access token (never the token). */
    token_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name such as HF_TOKEN')
      .optional(),
    /** Upper bound on max_tokens, whatever the plugin asks for. */
    max_tokens: int(1, 8192).default(1024),
  })
  .meta({ id: 'JobLlmEndpoint' });
export type JobLlmEndpoint = z.infer<typeof JobLlmEndpointSchema>;

/** A plugin use in a job: the reference, its config, and the capabilities this job grants it. */
export const JobPluginUseSchema = PluginUseSchema.extend({
  grants: z.array(PluginCapabilitySchema).default([]),
  /** For a published plugin granted `llm.chat`: where its ctx.llm.chat goes. */
  llm: JobLlmEndpointSchema.optional(),
})
  .superRefine((use, ctx) => {
    if (!use.llm) return;
    if (use.plugin.startsWith('builtin:')) {
      ctx.addIssue({
        code: 'custom',
        path: ['llm'],
        message:
          'built-in plugins take their endpoint in config (builtin:llm: config.endpoint_url); remove llm',
      });
    } else if (!use.grants.includes('llm.chat')) {
      ctx.addIssue({
        code: 'custom',
        path: ['llm'],
        message: `only used when the plugin is granted llm.chat; add "grants": ["llm.chat"] or remove llm`,
      });
    }
  })
  .meta({ id: 'JobPluginUse' });
export type JobPluginUse = z.infer<typeof JobPluginUseSchema>;

export const DEFAULT_VERIFIER: JobPluginUse = { plugin: 'builtin:math', config: {}, grants: [] };
export const DEFAULT_CRITIC: JobPluginUse = { plugin: 'builtin:ground-truth', config: {}, grants: [] };
export const DEFAULT_SHAPING_PLUGIN = 'builtin:expression';
export const DEFAULT_SHAPING: JobPluginUse = {
  plugin: DEFAULT_SHAPING_PLUGIN,
  config: { expression: 'p / (p + gamma)', params: { gamma: 0.1 } },
  grants: [],
};

const LabelSchema = str(1, 64).regex(/^[A-Za-z0-9_.:=-]+$/, 'labels use letters, digits and _ . : = -');

const specFields = {
  name: str(0, 200).default(''),
  algorithm: AlgorithmSchema.default('critique-grpo'),
  model: ModelSpecSchema,
  datasets: DatasetsSchema,
  seed: int(0, 2 ** 31 - 1).default(0),
  evaluation: EvaluationSchema.default(DEFAULT_EVALUATION),
  /** Save a checkpoint every N steps (0 = only the final one). */
  checkpoint_every: int(0).default(50),
  webhook: JobWebhookSchema.optional(),
  /** `job.metrics_digest` webhooks; absent = every DEFAULT_METRICS_DIGEST_EVERY_STEPS steps. */
  metrics_digest: MetricsDigestSchema.optional(),
  /** A runner must carry every one of these labels to lease the job. */
  runner_labels: z.array(LabelSchema).max(32).default([]),
  /** Free-form string tags kept with the job. */
  metadata: z.record(str(1, 100), str(0, 1000)).default({}),
  /** Spend caps (docs/budgets-and-alarms.md); absent = no caps. */
  budgets: BudgetsSchema.optional(),
  /** Health alarm thresholds; absent = the defaults (alarms are on). */
  alarms: AlarmsSchema.optional(),
};

export const JobSpecInputSchema = z
  .strictObject({
    ...specFields,
    verifier: JobPluginUseSchema.optional(),
    critic: JobPluginUseSchema.optional(),
    shaping: JobPluginUseSchema.optional(),
    hyperparameters: HyperparametersInputSchema.default({}),
  })
  .meta({ id: 'JobSpecInput', description: 'A job as submitted; omitted fields get their defaults.' });
export type JobSpecInput = z.input<typeof JobSpecInputSchema>;
type ParsedJobSpecInput = z.output<typeof JobSpecInputSchema>;

/** The resolved, immutable spec: every default filled in. What the runner receives. */
export const JobSpecSchema = z
  .strictObject({
    ...specFields,
    name: str(0, 200),
    algorithm: AlgorithmSchema,
    seed: int(0, 2 ** 31 - 1),
    evaluation: EvaluationSchema,
    checkpoint_every: int(0),
    runner_labels: z.array(LabelSchema),
    metadata: z.record(z.string(), z.string()),
    verifier: JobPluginUseSchema,
    /** null unless critique-grpo. */
    critic: JobPluginUseSchema.nullable(),
    /** null unless critique-grpo. */
    shaping: JobPluginUseSchema.nullable(),
    hyperparameters: HyperparametersSchema,
  })
  .meta({ id: 'JobSpec', description: 'The stored job spec with every default filled in.' });
export type JobSpec = z.infer<typeof JobSpecSchema>;

export type JobSpecResult = { ok: true; spec: JobSpec } | { ok: false; fields: FieldError[] };

/** Validates a submitted spec (shape, then cross-field rules) and fills every default. */
export function parseJobSpec(body: unknown): JobSpecResult {
  const parsed = JobSpecInputSchema.safeParse(body);
  if (!parsed.success) return { ok: false, fields: fieldErrorsFromZod(parsed.error) };
  return resolveJobSpec(parsed.data);
}

/** Fills defaults (algorithm- and preset-dependent) into a shape-valid input and checks cross-field rules. */
export function resolveJobSpec(input: ParsedJobSpecInput): JobSpecResult {
  const fields: FieldError[] = [];
  const hp = input.hyperparameters;
  const isGrpo = input.algorithm === 'grpo';
  const isSft = input.algorithm === 'sft';
  const isEvaluate = input.algorithm === 'evaluate';
  // critic, shaping and the refinement knobs belong to critique-grpo alone
  const noCritique = isGrpo || isSft || isEvaluate;

  if (!isGrpo && hp.preset != null) {
    fields.push({ path: 'hyperparameters.preset', message: "presets apply only to algorithm 'grpo'" });
  }
  if (noCritique) {
    for (const knob of CRITIQUE_ONLY_KNOBS) {
      if (hp[knob] !== undefined) {
        fields.push({
          path: `hyperparameters.${knob}`,
          message: "only used by algorithm 'critique-grpo'; remove it",
        });
      }
    }
    if (input.critic)
      fields.push({ path: 'critic', message: "only used by algorithm 'critique-grpo'; remove it" });
    if (input.shaping)
      fields.push({ path: 'shaping', message: "only used by algorithm 'critique-grpo'; remove it" });
  }
  if (isSft && input.datasets.train.fields.completion === undefined) {
    // SFT reads a completion per row; name the default so the stored spec says which field
    input.datasets.train.fields.completion = 'completion';
  }
  if (!isSft && input.datasets.train.fields.completion !== undefined) {
    fields.push({
      path: 'datasets.train.fields.completion',
      message: "only used by algorithm 'sft'; remove it",
    });
  }

  const preset = isGrpo ? (hp.preset ?? DEFAULT_GRPO_PRESET) : null;
  const base: Hyperparameters = {
    ...CRITIQUE_GRPO_DEFAULTS,
    ...(preset ? GRPO_PRESET_VALUES[preset] : {}),
    ...(isSft ? SFT_DEFAULTS : {}),
  };
  const { dynamic_sampling, overlong_buffer, ...flat } = hp;
  const setFlat = Object.fromEntries(Object.entries(flat).filter(([, v]) => v !== undefined));
  const hyperparameters: Hyperparameters = {
    ...base,
    ...setFlat,
    preset,
    dynamic_sampling: { ...base.dynamic_sampling, ...definedOnly(dynamic_sampling) },
    overlong_buffer: { ...base.overlong_buffer, ...definedOnly(overlong_buffer) },
  };

  const at = (knob: string) => `hyperparameters.${knob}`;
  const h = hyperparameters;
  if (h.clip_eps_low >= 1)
    fields.push({ path: at('clip_eps_low'), message: `must be < 1, got ${h.clip_eps_low}` });
  if (!isGrpo && h.refinements_per_group > h.group_size) {
    fields.push({
      path: at('refinements_per_group'),
      message: `must be <= group_size (${h.group_size}), got ${h.refinements_per_group}`,
    });
  }
  if (h.mini_batches_per_step > h.prompts_per_step) {
    fields.push({
      path: at('mini_batches_per_step'),
      message: `must be <= prompts_per_step (${h.prompts_per_step}), got ${h.mini_batches_per_step}`,
    });
  }
  if (h.warmup_steps > h.total_steps) {
    fields.push({
      path: at('warmup_steps'),
      message: `must be <= total_steps (${h.total_steps}), got ${h.warmup_steps}`,
    });
  }
  if (h.max_prompt_tokens + h.max_response_tokens > 262_144) {
    fields.push({
      path: at('max_response_tokens'),
      message: 'max_prompt_tokens + max_response_tokens must be <= 262144',
    });
  }
  if (h.overlong_buffer.enabled && h.overlong_buffer.length >= h.max_response_tokens) {
    fields.push({
      path: at('overlong_buffer.length'),
      message: `must be < max_response_tokens (${h.max_response_tokens}), got ${h.overlong_buffer.length}`,
    });
  }
  if (!h.prompt_template.includes('{question}')) {
    fields.push({ path: at('prompt_template'), message: 'must contain the placeholder {question}' });
  }
  if (!noCritique) {
    const budget = h.max_refinement_prompt_tokens;
    const fixed = fixedRefinementChars(h.system_prompt, h.refinement_prompt_template);
    // a lower bound on the fixed parts' tokens (no tokenizer here): 16 characters per token is
    // more than any common tokenizer packs; the runner checks exactly before the first step
    if (budget !== null && Math.ceil(fixed / 16) >= budget) {
      fields.push({
        path: at('max_refinement_prompt_tokens'),
        message: `${budget} tokens cannot hold the system prompt and refinement template alone (${fixed} characters); raise it or set null`,
      });
    }
    for (const placeholder of ['{question}', '{previous_solution}', '{critique}']) {
      if (!h.refinement_prompt_template.includes(placeholder)) {
        fields.push({
          path: at('refinement_prompt_template'),
          message: `must contain the placeholder ${placeholder}`,
        });
      }
    }
  }
  if (fields.length > 0) return { ok: false, fields };

  const spec: JobSpec = {
    name: input.name,
    algorithm: input.algorithm,
    model: input.model,
    datasets: input.datasets,
    seed: input.seed,
    evaluation: input.evaluation,
    checkpoint_every: input.checkpoint_every,
    ...(input.webhook ? { webhook: input.webhook } : {}),
    ...(input.metrics_digest ? { metrics_digest: input.metrics_digest } : {}),
    ...(input.budgets ? { budgets: input.budgets } : {}),
    ...(input.alarms ? { alarms: input.alarms } : {}),
    runner_labels: input.runner_labels,
    metadata: input.metadata,
    verifier: input.verifier ?? DEFAULT_VERIFIER,
    critic: noCritique ? null : (input.critic ?? DEFAULT_CRITIC),
    shaping: noCritique ? null : (input.shaping ?? DEFAULT_SHAPING),
    hyperparameters,
  };
  return { ok: true, spec };
}

/** Characters of the refinement prompt that do not depend on the row: the system prompt and the template without its placeholders. */
export function fixedRefinementChars(systemPrompt: string, template: string): number {
  return systemPrompt.length + template.replace(/\{(question|previous_solution|critique)\}/g, '').length;
}

function definedOnly<T extends object>(value: T | undefined): Partial<T> {
  if (!value) return {};
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Plugin references a spec uses, by role (verifier, critic, shaping), skipping null roles. */
export function pluginUsesOf(
  spec: JobSpec,
): { role: 'verifier' | 'critic' | 'shaping'; use: JobPluginUse }[] {
  const roles = [
    { role: 'verifier' as const, use: spec.verifier },
    { role: 'critic' as const, use: spec.critic },
    { role: 'shaping' as const, use: spec.shaping },
  ];
  return roles.filter(
    (r): r is { role: 'verifier' | 'critic' | 'shaping'; use: JobPluginUse } => r.use !== null,
  );
}
