import { describe, expect, it } from 'vitest';
import {
  CRITIQUE_GRPO_DEFAULTS,
  DEFAULT_REFINEMENT_PROMPT_TEMPLATE,
  fieldErrorsFromZod,
  JobSpecSchema,
  MetricsBatchSchema,
  parseJobSpec,
} from './index';

const minimal = {
  model: { id: 'Qwen/Qwen3-0.6B' },
  datasets: { train: { uri: 'artifact://art_abc123' } },
};

function fieldsOf(body: unknown) {
  const result = parseJobSpec(body);
  if (result.ok) throw new Error('expected a validation error');
  return result.fields;
}

describe('parseJobSpec', () => {
  it('fills every critique-grpo default and the result satisfies the stored-spec schema', () => {
    const result = parseJobSpec(minimal);
    if (!result.ok) throw new Error(JSON.stringify(result.fields));
    const { spec } = result;
    expect(spec.algorithm).toBe('critique-grpo');
    expect(spec.hyperparameters).toEqual(CRITIQUE_GRPO_DEFAULTS);
    expect(spec.hyperparameters.group_size).toBe(7);
    expect(spec.hyperparameters.refine_trigger).toBe('all_incorrect');
    expect(spec.hyperparameters.refinement_prompt_template).toBe(DEFAULT_REFINEMENT_PROMPT_TEMPLATE);
    expect(spec.model.adapter).toEqual({
      type: 'lora',
      rank: 16,
      alpha: 32,
      dropout: 0,
      target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
    });
    expect(spec.datasets.train.fields).toEqual({ prompt: 'prompt', reference: 'answer' });
    expect(spec.verifier.plugin).toBe('builtin:math');
    expect(spec.critic?.plugin).toBe('builtin:ground-truth');
    expect(spec.shaping?.config).toEqual({ expression: 'p / (p + gamma)', params: { gamma: 0.1 } });
    expect(JobSpecSchema.parse(spec)).toEqual(spec);
  });

  it('rejects an unknown field anywhere with its path', () => {
    expect(fieldsOf({ ...minimal, hyperparameters: { group_sise: 8 } })).toEqual([
      { path: 'hyperparameters.group_sise', message: 'unknown field (check the spelling)' },
    ]);
    expect(fieldsOf({ ...minimal, verifier: { plugin: 'builtin:math', confg: {} } })[0]?.path).toBe(
      'verifier.confg',
    );
    expect(
      fieldsOf({
        ...minimal,
        datasets: { train: { uri: 'artifact://art_x', fields: { prompt: 'q', answer: 'a' } } },
      }),
    ).toEqual([{ path: 'datasets.train.fields.answer', message: 'unknown field (check the spelling)' }]);
  });

  it('names the bound and the value sent', () => {
    expect(fieldsOf({ ...minimal, hyperparameters: { group_size: 1 } })).toEqual([
      { path: 'hyperparameters.group_size', message: 'must be >= 2, got 1' },
    ]);
    expect(fieldsOf({ ...minimal, hyperparameters: { advantage_norm: 'std' } })[0]).toEqual({
      path: 'hyperparameters.advantage_norm',
      message: `must be one of 'mean', 'mean_std', got "std"`,
    });
    expect(fieldsOf({ ...minimal, model: undefined })[0]?.path).toBe('model');
  });

  it('fills a GRPO preset but keeps what the user set', () => {
    const result = parseJobSpec({
      ...minimal,
      algorithm: 'grpo',
      hyperparameters: { preset: 'dapo', clip_eps_high: 0.3, dynamic_sampling: { max_extra_rounds: 5 } },
    });
    if (!result.ok) throw new Error(JSON.stringify(result.fields));
    const hp = result.spec.hyperparameters;
    expect(hp.preset).toBe('dapo');
    expect(hp.loss_aggregation).toBe('token_mean');
    expect(hp.advantage_norm).toBe('mean_std');
    expect(hp.clip_eps_high).toBe(0.3);
    expect(hp.group_size).toBe(16);
    expect(hp.dynamic_sampling).toEqual({ enabled: true, max_extra_rounds: 5 });
    expect(result.spec.critic).toBeNull();
    expect(result.spec.shaping).toBeNull();
  });

  it('defaults grpo to the dr-grpo preset', () => {
    const result = parseJobSpec({ ...minimal, algorithm: 'grpo' });
    if (!result.ok) throw new Error(JSON.stringify(result.fields));
    expect(result.spec.hyperparameters.preset).toBe('dr-grpo');
    expect(result.spec.hyperparameters.clip_initial).toBe(true);
  });

  it('rejects knobs that do not apply to the algorithm and cross-field conflicts', () => {
    expect(fieldsOf({ ...minimal, algorithm: 'grpo', critic: { plugin: 'builtin:indicative' } })).toEqual([
      { path: 'critic', message: "only used by algorithm 'critique-grpo'; remove it" },
    ]);
    expect(fieldsOf({ ...minimal, hyperparameters: { preset: 'dapo' } })[0]?.path).toBe(
      'hyperparameters.preset',
    );
    expect(fieldsOf({ ...minimal, hyperparameters: { group_size: 2, refinements_per_group: 3 } })).toEqual([
      { path: 'hyperparameters.refinements_per_group', message: 'must be <= group_size (2), got 3' },
    ]);
    expect(
      fieldsOf({ ...minimal, hyperparameters: { refinement_prompt_template: '{question}' } }),
    ).toHaveLength(2);
  });

  it('rejects a bad plugin reference and a bad dataset uri', () => {
    const fields = fieldsOf({
      ...minimal,
      verifier: { plugin: 'acme/grader' },
      datasets: { train: { uri: 'ftp://x' } },
    });
    expect(fields.map((f) => f.path).sort()).toEqual(['datasets.train.uri', 'verifier.plugin']);
  });

  it('takes an llm endpoint for a published plugin granted llm.chat, and refuses it anywhere else', () => {
    const llm = { endpoint_url: 'http://127.0.0.1:8080/v1', model: 'judge', token_env: 'JUDGE_TOKEN' };
    const ok = parseJobSpec({
      ...minimal,
      critic: { plugin: 'acme/rubric@1.0.0', grants: ['llm.chat'], llm },
    });
    if (!ok.ok) throw new Error(JSON.stringify(ok.fields));
    expect(ok.spec.critic?.llm).toEqual({ ...llm, max_tokens: 1024 });
    expect(JobSpecSchema.safeParse(ok.spec).success).toBe(true);

    const notGranted = fieldsOf({ ...minimal, critic: { plugin: 'acme/rubric@1.0.0', llm } });
    expect(notGranted).toEqual([
      { path: 'critic.llm', message: expect.stringContaining('add "grants": ["llm.chat"]') },
    ]);
    const builtin = fieldsOf({
      ...minimal,
      critic: { plugin: 'builtin:llm', grants: ['llm.chat'], llm },
    });
    expect(builtin[0]).toMatchObject({
      path: 'critic.llm',
      message: expect.stringContaining('config.endpoint_url'),
    });
    const badUrl = fieldsOf({
      ...minimal,
      critic: { plugin: 'acme/rubric@1.0.0', grants: ['llm.chat'], llm: { endpoint_url: 'file:///etc' } },
    });
    expect(badUrl.map((f) => f.path)).toEqual(['critic.llm.endpoint_url']);
    const badEnv = fieldsOf({
      ...minimal,
      critic: { plugin: 'acme/rubric@1.0.0', grants: ['llm.chat'], llm: { ...llm, token_env: 'hf-token!' } },
    });
    expect(badEnv.map((f) => f.path)).toEqual(['critic.llm.token_env']);
  });
});

describe('runner protocol', () => {
  it('rejects NaN-like metric values and unknown fields in a metrics batch', () => {
    const parsed = MetricsBatchSchema.safeParse({
      lease_id: 'l',
      attempt: 1,
      points: [{ step: 0, values: { loss: 'NaN' }, extra: 1 }],
    });
    expect(parsed.success).toBe(false);
    if (parsed.success) return;
    expect(
      fieldErrorsFromZod(parsed.error)
        .map((f) => f.path)
        .sort(),
    ).toEqual(['points.0.extra', 'points.0.values.loss']);
  });
});

describe('SFT, evaluation and refinement-prompt knobs', () => {
  const ok = (body: unknown) => {
    const r = parseJobSpec(body);
    if (!r.ok) throw new Error(JSON.stringify(r.fields));
    return r.spec;
  };

  it('an SFT job gets SFT defaults, the completion field, and no critic or shaping', () => {
    const spec = ok({ ...minimal, algorithm: 'sft' });
    expect(spec.datasets.train.fields.completion).toBe('completion');
    expect(spec.hyperparameters.learning_rate).toBe(1e-4);
    expect(spec.hyperparameters.prompts_per_step).toBe(16);
    expect(spec.critic).toBeNull();
    expect(spec.shaping).toBeNull();
    expect(JobSpecSchema.safeParse(spec).success).toBe(true);
  });

  it('refuses critique-only knobs and a completion field where they mean nothing', () => {
    expect(fieldsOf({ ...minimal, algorithm: 'sft', critic: { plugin: 'builtin:ground-truth' } })).toEqual([
      { path: 'critic', message: "only used by algorithm 'critique-grpo'; remove it" },
    ]);
    expect(
      fieldsOf({ ...minimal, algorithm: 'evaluate', hyperparameters: { critic_fallback: 'drop' } })[0].path,
    ).toBe('hyperparameters.critic_fallback');
    expect(
      fieldsOf({
        ...minimal,
        datasets: { train: { uri: 'artifact://art_x', fields: { completion: 'c' } } },
      })[0].path,
    ).toBe('datasets.train.fields.completion');
  });

  it('every GRPO preset has no entropy bonus, as its reference recipe; Critique-GRPO keeps 0.001', () => {
    for (const preset of ['deepseekmath', 'verl-r1', 'dr-grpo', 'dapo'])
      expect(
        ok({ ...minimal, algorithm: 'grpo', hyperparameters: { preset } }).hyperparameters.entropy_coef,
      ).toBe(0);
    expect(ok(minimal).hyperparameters.entropy_coef).toBe(0.001);
  });

  it('critic_fallback defaults to the released code (ground-truth); first_correct is selectable', () => {
    const spec = ok({ ...minimal, hyperparameters: { refinement_selection: 'first_correct' } });
    expect(spec.hyperparameters.critic_fallback).toBe('ground-truth');
    expect(spec.hyperparameters.refinement_selection).toBe('first_correct');
    expect(spec.hyperparameters.max_refinement_prompt_tokens).toBeNull();
  });

  it('refuses a refinement budget that surely cannot hold the template alone, naming the field', () => {
    const fields = fieldsOf({ ...minimal, hyperparameters: { max_refinement_prompt_tokens: 10 } });
    expect(fields[0].path).toBe('hyperparameters.max_refinement_prompt_tokens');
    expect(
      ok({ ...minimal, hyperparameters: { max_refinement_prompt_tokens: 600 } }).hyperparameters
        .max_refinement_prompt_tokens,
    ).toBe(600);
  });
});
