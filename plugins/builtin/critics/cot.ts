// Chain-of-thought critics (§1.3, §8.7): builtin:llm asks any chat-completions endpoint through
// @huggingface/inference, builtin:self asks the policy through the runner's generate(). Both enforce
// the label check: the critique's conclusion must agree with the verifier, else ask again, and after
// `label_attempts` disagreements fall back to the ground-truth template.
import type { CriticInput } from '@cgrpo/contract';
import {
  chatCompletion,
  INFERENCE_PROVIDERS,
  InferenceClientProviderApiError,
  InferenceClientProviderOutputError,
} from '@huggingface/inference';
import { z } from 'zod';
import { BuiltinPluginError } from '../errors';
import { groundTruthCritique } from './rule';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface GenerateOptions {
  temperature: number;
  top_p: number;
  max_tokens: number;
  signal?: AbortSignal;
}

/** What a critic returns: the contract's CriticResult plus details for logs and the rollout record. */
export interface CriticOutcome {
  critique: string;
  details: Record<string, unknown>;
}

export const DEFAULT_COT_PROMPT_TEMPLATE = `You are an expert in mathematics and the sciences. Below are a question and a student's solution to it.

Question:
{question}

Student's solution:
{response}

{reference_section}Review the student's solution step by step. For each step, say briefly whether it is right, and explain the first mistake if there is one. Do not write a full solution of your own.

End your review with one final line that reads either "Conclusion: correct [END]" or "Conclusion: incorrect [END]".`;

export const COT_PLACEHOLDERS = [
  'question',
  'response',
  'reference',
  'solution',
  'reference_section',
] as const;

const cotFields = {
  /** Placeholders: {question}, {response} (required), {reference}, {reference_section}. */
  prompt_template: z.string().min(1).max(20_000).default(DEFAULT_COT_PROMPT_TEMPLATE),
  /** Optional system message; empty = none. */
  system_prompt: z.string().max(20_000).default(''),
  /** Show the reference answer to the critic via {reference_section} (the released code's form). */
  show_reference: z.boolean().default(false),
  /** all: critique every response (paper); incorrect_only: correct ones get the ground-truth template (code). */
  llm_for: z.enum(['all', 'incorrect_only']).default('all'),
  temperature: z.number().min(0).max(2).default(0.7),
  top_p: z.number().gt(0).max(1).default(0.75),
  max_tokens: z.number().int().min(1).max(32_768).default(4096),
  /** Require the critique's conclusion to agree with the verifier. */
  label_check: z.boolean().default(true),
  /** Critiques requested before falling back to the ground-truth template. */
  label_attempts: z.number().int().min(1).max(10).default(3),
};

function checkTemplate(config: { prompt_template: string }, ctx: z.RefinementCtx): void {
  for (const name of ['question', 'response']) {
    if (!config.prompt_template.includes(`{${name}}`)) {
      ctx.addIssue({
        code: 'custom',
        path: ['prompt_template'],
        message: `must contain the placeholder {${name}}`,
      });
    }
  }
}

export const SelfCriticConfigSchema = z.strictObject(cotFields).superRefine(checkTemplate);
export type SelfCriticConfig = z.output<typeof SelfCriticConfigSchema>;

export const LlmCriticConfigSchema = z
  .strictObject({
    ...cotFields,
    /** OpenAI-compatible base URL (TGI, vLLM, llama.cpp, any /v1/chat/completions server). */
    endpoint_url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
    /** Hugging Face Inference Providers routing when no endpoint_url is given ('auto' picks one). */
    provider: z.enum(['auto', ...INFERENCE_PROVIDERS]).optional(),
    /** Model id: required for Inference Providers; for vLLM the served model name; TGI ignores it. */
    model: z.string().min(1).max(500).optional(),
    /** Name of the environment variable on the runner holding the access token (never the token itself). */
    token_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name such as HF_TOKEN')
      .optional(),
    /** Per attempt. */
    timeout_ms: z.number().int().min(100).max(600_000).default(60_000),
    /** Extra attempts after a timeout, a connection error, HTTP 408/429 or 5xx. */
    max_retries: z.number().int().min(0).max(10).default(3),
    backoff_ms: z.number().int().min(0).max(60_000).default(500),
    max_backoff_ms: z.number().int().min(0).max(600_000).default(10_000),
    /** Requests in flight at once from this critic. */
    concurrency: z.number().int().min(1).max(256).default(8),
  })
  .superRefine((config, ctx) => {
    checkTemplate(config, ctx);
    if (!config.endpoint_url && !config.model) {
      ctx.addIssue({
        code: 'custom',
        path: ['endpoint_url'],
        message:
          'give endpoint_url (a TGI/vLLM/OpenAI-compatible server) or model (Hugging Face Inference Providers)',
      });
    }
    if (config.endpoint_url && config.provider && config.provider !== 'hf-inference') {
      ctx.addIssue({
        code: 'custom',
        path: ['provider'],
        message: 'a provider cannot be combined with endpoint_url',
      });
    }
  });
export type LlmCriticConfig = z.output<typeof LlmCriticConfigSchema>;

export function buildCritiqueMessages(
  input: Pick<CriticInput, 'question' | 'response' | 'reference' | 'solution'>,
  config: Pick<SelfCriticConfig, 'prompt_template' | 'system_prompt' | 'show_reference'>,
): ChatMessage[] {
  const values: Record<string, string> = {
    question: input.question,
    response: input.response,
    reference: input.reference,
    solution: input.solution ?? '',
    // §8.7: with show_reference, the critic sees the reference answer and, when the dataset maps
    // one, the worked solution
    reference_section: config.show_reference
      ? `Reference answer:\n${input.reference}\n\n${input.solution ? `Reference solution:\n${input.solution}\n\n` : ''}`
      : '',
  };
  const content = config.prompt_template.replace(/\{([a-z_]+)\}/g, (whole, name: string) =>
    Object.hasOwn(values, name) ? values[name] : whole,
  );
  return [
    ...(config.system_prompt ? [{ role: 'system' as const, content: config.system_prompt }] : []),
    { role: 'user', content },
  ];
}

/** The verdict of the last "Conclusion: …" line, or null when there is none. */
export function parseConclusion(critique: string): 'correct' | 'incorrect' | null {
  let verdict: 'correct' | 'incorrect' | null = null;
  const re = /conclusion\s*[:：]?\s*[*_`"']*\s*(correct|incorrect|right|wrong|true|false)\b/gi;
  for (const m of critique.matchAll(re)) {
    verdict = ['correct', 'right', 'true'].includes(m[1].toLowerCase()) ? 'correct' : 'incorrect';
  }
  return verdict;
}

/** The critique as the refinement prompt should see it: trimmed, without the [END] marker and what follows. */
export function cleanCritique(text: string): string {
  const end = text.indexOf('[END]');
  return (end >= 0 ? text.slice(0, end) : text).trim();
}

type Complete = (messages: ChatMessage[], options: GenerateOptions) => Promise<string>;

/** The label-checked critique loop shared by builtin:llm and builtin:self. */
export async function cotCritique(
  input: CriticInput,
  config: SelfCriticConfig,
  complete: Complete,
  signal?: AbortSignal,
): Promise<CriticOutcome> {
  const expected = input.verification.correct ? 'correct' : 'incorrect';
  if (config.llm_for === 'incorrect_only' && input.verification.correct) {
    return {
      ...groundTruthCritique(input),
      details: { source: 'ground_truth_template', reason: 'llm_for=incorrect_only' },
    };
  }
  const messages = buildCritiqueMessages(input, config);
  const options: GenerateOptions = {
    temperature: config.temperature,
    top_p: config.top_p,
    max_tokens: config.max_tokens,
    ...(signal ? { signal } : {}),
  };
  const seen: (string | null)[] = [];
  for (let attempt = 1; attempt <= config.label_attempts; attempt++) {
    const text = await complete(messages, options);
    const conclusion = parseConclusion(text);
    seen.push(conclusion);
    if (!config.label_check || conclusion === expected) {
      return {
        critique: cleanCritique(text),
        details: { source: 'llm', attempts: attempt, conclusion, expected },
      };
    }
  }
  return {
    ...groundTruthCritique(input),
    details: {
      source: 'fallback',
      attempts: config.label_attempts,
      expected,
      conclusions: seen,
      reason: `the critique's conclusion disagreed with the verifier ${config.label_attempts} times`,
    },
  };
}

// ---- transport for builtin:llm ------------------------------------------------------------------

class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

const CONNECTION_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

interface Failure {
  code: 'critic_unreachable' | 'critic_timeout' | 'critic_http_error';
  retryable: boolean;
  message: string;
}

function errorCode(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const nested = (e as { errors?: unknown[] }).errors;
    if (Array.isArray(nested) && nested.length > 0) return errorCode(nested[0]);
  }
  return undefined;
}

function classify(error: unknown, timedOut: boolean, timeoutMs: number): Failure {
  if (timedOut)
    return { code: 'critic_timeout', retryable: true, message: `no answer within timeout_ms = ${timeoutMs}` };
  if (error instanceof InferenceClientProviderApiError) {
    const status = error.httpResponse.status;
    const retryable = status === 408 || status === 425 || status === 429 || status >= 500;
    return { code: 'critic_http_error', retryable, message: `HTTP ${status}: ${error.message}` };
  }
  if (error instanceof InferenceClientProviderOutputError) {
    return { code: 'critic_http_error', retryable: true, message: `malformed answer: ${error.message}` };
  }
  const code = errorCode(error);
  if (code && CONNECTION_ERRORS.has(code)) {
    return { code: 'critic_unreachable', retryable: true, message: `connection failed (${code})` };
  }
  return {
    code: 'critic_http_error',
    retryable: false,
    message: error instanceof Error ? error.message : String(error),
  };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener('abort', abort);
      resolve();
    }
    function abort() {
      clearTimeout(timer);
      reject(signal?.reason);
    }
    signal?.addEventListener('abort', abort, { once: true });
  });
}

const ADVICE: Record<Failure['code'], string> = {
  critic_unreachable:
    'check config.endpoint_url and that the server is running and reachable from the runner',
  critic_timeout: 'raise config.timeout_ms, lower config.max_tokens, or check the server load',
  critic_http_error: 'check config.model, the access token (config.token_env) and the server logs',
};

/** A `complete` function speaking chat completions through @huggingface/inference, with retries. */
export function llmComplete(
  config: LlmCriticConfig,
  accessToken: string | undefined,
  plugin = 'builtin:llm',
): Complete {
  const semaphore = new Semaphore(config.concurrency);
  const target = config.endpoint_url ?? `${config.provider ?? 'auto'}:${config.model}`;
  const once = async (
    messages: ChatMessage[],
    options: GenerateOptions,
    signal: AbortSignal,
  ): Promise<string> => {
    const out = await chatCompletion(
      {
        ...(config.endpoint_url
          ? { endpointUrl: config.endpoint_url, model: config.model ?? 'tgi' }
          : { provider: config.provider ?? 'auto', model: config.model }),
        ...(accessToken ? { accessToken } : {}),
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        temperature: options.temperature,
        top_p: options.top_p,
        max_tokens: options.max_tokens,
      },
      { signal, retry_on_error: false },
    );
    const content = out.choices?.[0]?.message?.content;
    if (typeof content !== 'string')
      throw new InferenceClientProviderOutputError('no message content in the first choice');
    return content;
  };
  return (messages, options) =>
    semaphore.run(async () => {
      for (let attempt = 0; ; attempt++) {
        const timeout = AbortSignal.timeout(config.timeout_ms);
        const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
        try {
          return await once(messages, options, signal);
        } catch (error) {
          if (options.signal?.aborted) throw error;
          const failure = classify(error, timeout.aborted, config.timeout_ms);
          if (!failure.retryable || attempt >= config.max_retries) {
            const tries = attempt + 1;
            throw new BuiltinPluginError(
              failure.code,
              plugin,
              `LLM endpoint ${target}: ${failure.message} (${tries} attempt${tries === 1 ? '' : 's'}); ${ADVICE[failure.code]}`,
            );
          }
          const delay = Math.min(config.max_backoff_ms, config.backoff_ms * 2 ** attempt);
          await sleep(delay * (0.5 + 0.5 * Math.random()), options.signal);
        }
      }
    });
}
