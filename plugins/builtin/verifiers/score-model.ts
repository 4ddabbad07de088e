// builtin:score-model — an LLM judge scores the response (OpenAI's `score_model` grader): the
// configured chat messages, with {question}, {response} and {reference} filled in, go to a
// chat-completions endpoint (the same client, retries and timeouts as builtin:llm); the last number
// of the answer (or its JSON "result"/"score") clamped to `range` is the raw score, and the reward is
// that score scaled to 0..1.
import type { VerifierInput, VerifierResult } from '@cgrpo/contract';
import { z } from 'zod';
import { type ChatMessage, type GenerateOptions, LlmCriticConfigSchema } from '../critics/cot';

const PLACEHOLDERS = ['question', 'response', 'reference'] as const;

export const ScoreModelConfigSchema = z
  .strictObject({
    /** OpenAI-compatible base URL (vLLM, TGI, llama.cpp, any /v1/chat/completions server). */
    endpoint_url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
    /** The judge's model name on that server. */
    model: z.string().min(1).max(500).optional(),
    /** Name of the runner's environment variable holding the access token (never the token itself). */
    token_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name such as JUDGE_TOKEN')
      .optional(),
    /** The judge's prompt; placeholders {question}, {response} (required somewhere) and {reference}. */
    messages: z
      .array(
        z.strictObject({
          role: z.enum(['system', 'user', 'assistant']),
          content: z.string().min(1).max(20_000),
        }),
      )
      .min(1)
      .max(20),
    /** [low, high] of the judge's scale; the reward is (score - low) / (high - low). */
    range: z.tuple([z.number(), z.number()]).default([0, 1]),
    /** `correct` is score >= pass_threshold on the judge's scale; default: the middle of range. */
    pass_threshold: z.number().optional(),
    temperature: z.number().min(0).max(2).default(0),
    top_p: z.number().gt(0).max(1).default(1),
    max_tokens: z.number().int().min(1).max(32_768).default(1024),
    timeout_ms: z.number().int().min(100).max(600_000).default(60_000),
    max_retries: z.number().int().min(0).max(10).default(3),
    concurrency: z.number().int().min(1).max(256).default(8),
  })
  .superRefine((config, ctx) => {
    if (!(config.range[0] < config.range[1]))
      ctx.addIssue({ code: 'custom', path: ['range'], message: 'must be [low, high] with low < high' });
    if (!config.messages.some((m) => m.content.includes('{response}')))
      ctx.addIssue({
        code: 'custom',
        path: ['messages'],
        message: 'one message must contain the placeholder {response}',
      });
  });
export type ScoreModelConfig = z.output<typeof ScoreModelConfigSchema>;

/** builtin:llm's config for the same endpoint, so the judge shares its client and retry policy. */
export function judgeEndpointConfig(config: ScoreModelConfig) {
  return LlmCriticConfigSchema.parse({
    endpoint_url: config.endpoint_url,
    ...(config.model ? { model: config.model } : {}),
    timeout_ms: config.timeout_ms,
    max_retries: config.max_retries,
    concurrency: config.concurrency,
  });
}

export function judgeMessages(input: VerifierInput, config: ScoreModelConfig): ChatMessage[] {
  const values: Record<(typeof PLACEHOLDERS)[number], string> = {
    question: input.question,
    response: input.response,
    reference: input.reference,
  };
  return config.messages.map((m) => ({
    role: m.role,
    content: m.content.replace(
      /\{(question|response|reference)\}/g,
      (_, name: keyof typeof values) => values[name],
    ),
  }));
}

/** The judge's score: JSON {"result"|"score": n} if the answer is JSON, else its last number. */
export function parseJudgeScore(answer: string): number | null {
  try {
    const parsed: unknown = JSON.parse(answer.trim());
    if (typeof parsed === 'number') return parsed;
    if (parsed && typeof parsed === 'object') {
      for (const key of ['result', 'score']) {
        const value = (parsed as Record<string, unknown>)[key];
        if (typeof value === 'number' && Number.isFinite(value)) return value;
      }
    }
  } catch {
    // not JSON: fall back to the last number in the text
  }
  const numbers = answer.match(/-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?/g);
  return numbers ? Number(numbers[numbers.length - 1]) : null;
}

export type Judge = (messages: ChatMessage[], options: GenerateOptions) => Promise<string>;

export async function verifyScoreModel(
  input: VerifierInput,
  config: ScoreModelConfig,
  judge: Judge,
): Promise<VerifierResult> {
  const answer = await judge(judgeMessages(input, config), {
    temperature: config.temperature,
    top_p: config.top_p,
    max_tokens: config.max_tokens,
  });
  const [low, high] = config.range;
  const parsed = parseJudgeScore(answer);
  if (parsed === null) {
    return {
      score: 0,
      correct: false,
      details: { raw_score: null, reason: 'no score in the judge answer', answer: answer.slice(0, 500) },
    };
  }
  const raw = Math.min(high, Math.max(low, parsed));
  const threshold = config.pass_threshold ?? (low + high) / 2;
  return {
    score: (raw - low) / (high - low),
    correct: raw >= threshold,
    details: { raw_score: raw, judge_score: parsed, range: [low, high], pass_threshold: threshold },
  };
}
