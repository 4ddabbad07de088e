// The built-in plugins, behind the contract's plugin interfaces: verifiers (exact, regex, choice,
// math), critics (indicative, ground-truth, llm, self) and the shaping expression. The runner calls
// them natively; the API lists them (BUILTINS) and validates job configs with validateBuiltinConfig.
import type {
  CriticInput,
  FieldError,
  PluginKind,
  ShapingConfig,
  VerifierInput,
  VerifierResult,
} from '@cgrpo/contract';
import { ShapingConfigSchema } from '@cgrpo/contract';
import { z } from 'zod';
import {
  type ChatMessage,
  type CriticOutcome,
  cotCritique,
  type GenerateOptions,
  LlmCriticConfigSchema,
  llmComplete,
  SelfCriticConfigSchema,
} from './critics/cot';
import {
  GroundTruthConfigSchema,
  groundTruthCritique,
  IndicativeConfigSchema,
  indicativeCritique,
} from './critics/rule';
import { BuiltinPluginError, parseConfig } from './errors';
import { MathVerifierConfigSchema, verifyMath } from './math/index';
import { checkShaping, type ShapingAst } from './shaping/expression';
import { ChoiceConfigSchema, verifyChoice } from './verifiers/choice';
import { ExactConfigSchema, verifyExact } from './verifiers/exact';
import { combine, compileFormula, MultiConfigSchema } from './verifiers/multi';
import { RegexConfigSchema, verifyRegex } from './verifiers/regex';
import { judgeEndpointConfig, ScoreModelConfigSchema, verifyScoreModel } from './verifiers/score-model';
import { TextSimilarityConfigSchema, verifyTextSimilarity } from './verifiers/text-similarity';

export { DEFAULT_COT_PROMPT_TEMPLATE, parseConclusion } from './critics/cot';
export type { BuiltinErrorCode } from './errors';
export { BuiltinPluginError } from './errors';
export type { ChatMessage, CriticOutcome, GenerateOptions };

export interface BuiltinVerifier {
  readonly name: string;
  verify(input: VerifierInput): Promise<VerifierResult>;
}

export interface BuiltinCritic {
  readonly name: string;
  /** Rejects with BuiltinPluginError when the critique cannot be produced (the runner records a missing value). */
  critique(input: CriticInput, options?: { signal?: AbortSignal }): Promise<CriticOutcome>;
}

/** What the runner (or the CLI) provides to critics. */
export interface CriticContext {
  /** The policy's own generation, for builtin:self. Returns the decoded completion. */
  generate?: (messages: ChatMessage[], options: GenerateOptions) => Promise<string>;
  /** Where builtin:llm looks up config.token_env (the runner passes its environment). */
  env?: Readonly<Record<string, string | undefined>>;
}

/** What the runner (or the CLI) provides to verifiers that leave the process. */
export interface VerifierContext {
  /** Where builtin:score-model looks up config.token_env. Without it, it refuses to run (the API's dry run). */
  env?: Readonly<Record<string, string | undefined>>;
}

export interface BuiltinShaping {
  readonly name: string;
  readonly expression: string;
  readonly params: Record<string, number>;
  readonly ast: ShapingAst;
}

export interface BuiltinInfo {
  name: string;
  kind: PluginKind;
  description: string;
  /** JSON Schema of the config (input form: fields with defaults are optional). */
  config_schema: Record<string, unknown>;
  /** A config that works, for docs and the API listing. */
  example_config: Record<string, unknown>;
}

interface Entry {
  kind: PluginKind;
  description: string;
  schema: z.ZodType;
  example: Record<string, unknown>;
}

const ENTRIES: Record<string, Entry> = {
  'builtin:math': {
    kind: 'verifier',
    description:
      'Extracts the final answer (last \\boxed{}, answer phrases, fallbacks) and checks mathematical equivalence with the reference (numbers, expressions, intervals, sets, matrices).',
    schema: MathVerifierConfigSchema,
    example: { float_rounding: 6, cas: 'mathjs' },
  },
  'builtin:exact': {
    kind: 'verifier',
    description:
      'The extracted answer equals the reference after normalisation (case, whitespace, $…$, quotes, trailing punctuation).',
    schema: ExactConfigSchema,
    example: { extract: 'auto', case_sensitive: false },
  },
  'builtin:regex': {
    kind: 'verifier',
    description:
      "A regular expression extracts the answer (group 'answer' or 1) and compares it with the reference, or must match the response; {reference} in the pattern is the escaped reference.",
    schema: RegexConfigSchema,
    example: { pattern: 'ANSWER:\\s*(?<answer>\\S+)', mode: 'extract' },
  },
  'builtin:choice': {
    kind: 'verifier',
    description:
      'Multiple choice: the letter the response commits to (\\boxed{B}, "answer is (B)", a final "B") equals the reference letter.',
    schema: ChoiceConfigSchema,
    example: { letters: 'ABCD' },
  },
  'builtin:text-similarity': {
    kind: 'verifier',
    description:
      'The similarity of the response to the reference is the reward: fuzzy_match (WRatio), bleu, gleu, rouge_1..rouge_5 or rouge_l (F1), 0..1; correct when it reaches pass_threshold.',
    schema: TextSimilarityConfigSchema,
    example: { metric: 'rouge_l', pass_threshold: 0.6 },
  },
  'builtin:score-model': {
    kind: 'verifier',
    description:
      'An LLM judge on a chat-completions endpoint scores the response with your prompt; the score, clamped to range and scaled to 0..1, is the reward. Runs on runners only.',
    schema: ScoreModelConfigSchema,
    example: {
      endpoint_url: 'http://localhost:8080/v1',
      model: 'Qwen/Qwen2.5-7B-Instruct',
      messages: [
        {
          role: 'user',
          content:
            'Question: {question}\nReference: {reference}\nAnswer: {response}\nScore the answer from 0 to 10. Reply with the number only.',
        },
      ],
      range: [0, 10],
      pass_threshold: 7,
    },
  },
  'builtin:multi': {
    kind: 'verifier',
    description:
      'Several built-in verifiers combined by a formula over their scores (+ - * / ^, min, max, abs, floor, ceil, sqrt, exp, log); the output clamped to 0..1 is the reward.',
    schema: MultiConfigSchema,
    example: {
      graders: {
        exact: { plugin: 'builtin:exact', config: { extract: 'whole' } },
        similar: { plugin: 'builtin:text-similarity', config: { metric: 'fuzzy_match' } },
      },
      calculate_output: '0.5 * exact + 0.5 * similar',
    },
  },
  'builtin:indicative': {
    kind: 'critic',
    description:
      'States only whether the response is correct ("The generated solution is correct/incorrect.").',
    schema: IndicativeConfigSchema,
    example: {},
  },
  'builtin:ground-truth': {
    kind: 'critic',
    description: 'States correctness and the reference answer ("…is incorrect, the ground truth is 42.").',
    schema: GroundTruthConfigSchema,
    example: {},
  },
  'builtin:llm': {
    kind: 'critic',
    description:
      'A step-by-step critique written by an LLM through any chat-completions endpoint (Hugging Face Inference Providers, TGI, vLLM, OpenAI-compatible), label-checked against the verifier with a ground-truth fallback.',
    schema: LlmCriticConfigSchema,
    example: {
      endpoint_url: 'http://localhost:8080/v1',
      model: 'Qwen/Qwen2.5-7B-Instruct',
      token_env: 'HF_TOKEN',
    },
  },
  'builtin:self': {
    kind: 'critic',
    description:
      'The policy critiques its own response (self-critique), with the same prompt and label check as builtin:llm.',
    schema: SelfCriticConfigSchema,
    example: { max_tokens: 1024 },
  },
  'builtin:expression': {
    kind: 'shaping',
    description:
      'A declarative expression over the token probability p and named params, compiled into the training graph (default p / (p + gamma)).',
    schema: ShapingConfigSchema,
    example: { expression: 'p / (p + gamma)', params: { gamma: 0.1 } },
  },
};

function qualified(name: string): string {
  return name.startsWith('builtin:') ? name : `builtin:${name}`;
}

function entryOf(name: string, kind: PluginKind): Entry {
  const full = qualified(name);
  const entry = ENTRIES[full];
  if (!entry || entry.kind !== kind) {
    const names = Object.entries(ENTRIES)
      .filter(([, e]) => e.kind === kind)
      .map(([n]) => n);
    throw new BuiltinPluginError(
      'unknown_plugin',
      full,
      `no built-in ${kind} of that name; the built-in ${kind}s are ${names.join(', ')}`,
    );
  }
  return entry;
}

/** Every built-in with its description and config schema (what GET /v1/plugins lists). */
export const BUILTINS: readonly BuiltinInfo[] = Object.entries(ENTRIES).map(([name, e]) => ({
  name,
  kind: e.kind,
  description: e.description,
  config_schema: z.toJSONSchema(e.schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>,
  example_config: e.example,
}));

export function isBuiltin(name: string): boolean {
  return Object.hasOwn(ENTRIES, qualified(name));
}

/**
 * Field errors of a config for a built-in (paths `config.<field>`), empty when valid. For the
 * shaping expression this includes the syntax check with the character position.
 */
export function validateBuiltinConfig(name: string, kind: PluginKind, config: unknown): FieldError[] {
  try {
    if (kind === 'shaping') getBuiltinShaping(name, config);
    else parseConfig(qualified(name), entryOf(name, kind).schema, config);
    if (qualified(name) === 'builtin:multi') {
      // each grader's own config, with paths under config.graders.<name>
      const { graders } = parseConfig('builtin:multi', MultiConfigSchema, config);
      return Object.entries(graders).flatMap(([graderName, use]) =>
        validateBuiltinConfig(use.plugin, 'verifier', use.config).map((f) => ({
          path: `config.graders.${graderName}.${f.path}`,
          message: f.message,
        })),
      );
    }
    return [];
  } catch (error) {
    if (error instanceof BuiltinPluginError) {
      return error.fields.length > 0 ? error.fields : [{ path: 'plugin', message: error.message }];
    }
    throw error;
  }
}

let mathWarmed = false;
/**
 * The math verifier's first symbolic comparison costs ~60 ms (mathjs builds and optimizes its
 * functions lazily); pay it once per process when a verifier is built, not in a training step.
 */
function warmMath(config: z.output<typeof MathVerifierConfigSchema>): void {
  if (mathWarmed) return;
  mathWarmed = true;
  verifyMath({ response: 'The answer is x + 1.', reference: '2' }, config);
}

function accessToken(
  plugin: string,
  tokenEnv: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string | undefined {
  if (!tokenEnv) return undefined;
  const token = env[tokenEnv];
  if (token) return token;
  throw new BuiltinPluginError(
    'invalid_config',
    plugin,
    `environment variable ${tokenEnv} (config.token_env) is not set on this runner`,
    [
      {
        path: 'config.token_env',
        message: `${tokenEnv} is not set; export it on the runner or remove token_env`,
      },
    ],
  );
}

export function getBuiltinVerifier(
  name: string,
  config: unknown = {},
  ctx: VerifierContext = {},
): BuiltinVerifier {
  const full = qualified(name);
  const entry = entryOf(full, 'verifier');
  switch (full) {
    case 'builtin:text-similarity': {
      const c = parseConfig(full, TextSimilarityConfigSchema, config);
      return { name: full, verify: async (input) => verifyTextSimilarity(input, c) };
    }
    case 'builtin:score-model': {
      const c = parseConfig(full, ScoreModelConfigSchema, config);
      if (!ctx.env) {
        throw new BuiltinPluginError(
          'verifier_needs_runner',
          full,
          'it calls an LLM endpoint with a token only the runner holds, so it runs in jobs only; submit a job (POST /v1/jobs)',
        );
      }
      const judge = llmComplete(judgeEndpointConfig(c), accessToken(full, c.token_env, ctx.env), full);
      return { name: full, verify: (input) => verifyScoreModel(input, c, judge) };
    }
    case 'builtin:multi': {
      const c = parseConfig(full, MultiConfigSchema, config);
      const compiled = compileFormula(c.calculate_output, Object.keys(c.graders));
      if (!compiled.ok) throw new BuiltinPluginError('invalid_config', full, compiled.message);
      const graders = Object.entries(c.graders).map(([graderName, use]) => {
        try {
          return [graderName, getBuiltinVerifier(use.plugin, use.config, ctx)] as const;
        } catch (error) {
          if (!(error instanceof BuiltinPluginError)) throw error;
          const prefix = `config.graders.${graderName}.`;
          throw new BuiltinPluginError(
            error.code,
            full,
            `graders.${graderName}: ${error.message}`,
            error.fields.map((f) => ({ path: prefix + f.path, message: f.message })),
          );
        }
      });
      return {
        name: full,
        verify: async (input) => {
          const results = await Promise.all(
            graders.map(async ([n, v]) => [n, await v.verify(input)] as const),
          );
          return combine(Object.fromEntries(results), compiled.formula, c);
        },
      };
    }
    case 'builtin:math': {
      const c = parseConfig(full, entry.schema as typeof MathVerifierConfigSchema, config);
      warmMath(c);
      return {
        name: full,
        verify: async (input) => {
          const { score, correct, details } = verifyMath(input, c);
          return { score, correct, details: { ...details } };
        },
      };
    }
    case 'builtin:exact': {
      const c = parseConfig(full, ExactConfigSchema, config);
      return { name: full, verify: async (input) => verifyExact(input, c) };
    }
    case 'builtin:regex': {
      const c = parseConfig(full, RegexConfigSchema, config);
      return { name: full, verify: async (input) => verifyRegex(input, c) };
    }
    default: {
      const c = parseConfig(full, ChoiceConfigSchema, config);
      return { name: full, verify: async (input) => verifyChoice(input, c) };
    }
  }
}

export function getBuiltinCritic(name: string, config: unknown = {}, ctx: CriticContext = {}): BuiltinCritic {
  const full = qualified(name);
  entryOf(full, 'critic');
  switch (full) {
    case 'builtin:indicative': {
      const c = parseConfig(full, IndicativeConfigSchema, config);
      return {
        name: full,
        critique: async (input) => ({ ...indicativeCritique(input, c), details: { source: 'template' } }),
      };
    }
    case 'builtin:ground-truth': {
      const c = parseConfig(full, GroundTruthConfigSchema, config);
      return {
        name: full,
        critique: async (input) => ({ ...groundTruthCritique(input, c), details: { source: 'template' } }),
      };
    }
    case 'builtin:llm': {
      const c = parseConfig(full, LlmCriticConfigSchema, config);
      let token: string | undefined;
      if (c.token_env) {
        token = ctx.env?.[c.token_env];
        if (!token) {
          throw new BuiltinPluginError(
            'invalid_config',
            full,
            `environment variable ${c.token_env} (config.token_env) is not set on this runner`,
            [
              {
                path: 'config.token_env',
                message: `${c.token_env} is not set; export it on the runner or remove token_env`,
              },
            ],
          );
        }
      }
      const complete = llmComplete(c, token, full);
      return { name: full, critique: (input, options) => cotCritique(input, c, complete, options?.signal) };
    }
    default: {
      const c = parseConfig(full, SelfCriticConfigSchema, config);
      const generate = ctx.generate;
      if (!generate) {
        throw new BuiltinPluginError(
          'critic_no_generator',
          full,
          'self-critique needs the policy model, which only the runner provides; use builtin:llm, builtin:ground-truth or builtin:indicative here',
        );
      }
      return { name: full, critique: (input, options) => cotCritique(input, c, generate, options?.signal) };
    }
  }
}

export function getBuiltinShaping(name: string, config: unknown = {}): BuiltinShaping {
  const full = qualified(name);
  entryOf(full, 'shaping');
  const c: ShapingConfig = parseConfig(full, ShapingConfigSchema, config);
  const checked = checkShaping(c.expression, c.params);
  if (!checked.ok) {
    const path = `config.${checked.problem.field}`;
    throw new BuiltinPluginError('invalid_config', full, `${path} ${checked.problem.message}`, [
      { path, message: checked.problem.message },
    ]);
  }
  return { name: full, expression: c.expression, params: c.params, ast: checked.ast };
}
