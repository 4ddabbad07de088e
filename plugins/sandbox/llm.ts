// Host side of `ctx.llm.chat`: the plugin sends messages, the runner answers through
// @huggingface/inference with the job's endpoint and credentials, which never enter the sandbox.
import { chatCompletion } from '@huggingface/inference';
import { z } from 'zod';

export const ChatMessageSchema = z.strictObject({
  role: z.enum(['system', 'user', 'assistant']),
  content: z.string().max(100_000),
});

export const ChatOptionsSchema = z.strictObject({
  max_tokens: z.number().int().min(1).max(8192).optional(),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  stop: z.array(z.string().max(100)).max(8).optional(),
});

export const ChatRequestSchema = z.strictObject({
  messages: z.array(ChatMessageSchema).min(1).max(64),
  options: ChatOptionsSchema.default({}),
});
export type ChatRequest = z.infer<typeof ChatRequestSchema>;

export const ChatResultSchema = z.object({
  content: z.string(),
  finish_reason: z.string().nullable(),
  usage: z.object({ prompt_tokens: z.number(), completion_tokens: z.number() }).nullable(),
});
export type ChatResult = z.infer<typeof ChatResultSchema>;

/** What the sandbox calls for `ctx.llm.chat`; injectable so tests and other hosts can serve it. */
export type LlmChat = (request: ChatRequest, signal: AbortSignal) => Promise<ChatResult>;

export interface InferenceEndpoint {
  /** OpenAI-compatible base URL (`http://host:port` or `.../v1`), e.g. a TGI, vLLM or llama.cpp server. */
  endpointUrl: string;
  model?: string;
  /** Sent as a bearer token; stays in the runner. */
  accessToken?: string;
  /** Upper bound on max_tokens whatever the plugin asks for. */
  maxTokens?: number;
}

/** An LlmChat served by @huggingface/inference's chatCompletion against the job's endpoint. */
export function inferenceChat(endpoint: InferenceEndpoint): LlmChat {
  const cap = endpoint.maxTokens ?? 1024;
  return async (request, signal) => {
    const out = await chatCompletion(
      {
        endpointUrl: endpoint.endpointUrl,
        model: endpoint.model ?? 'tgi',
        ...(endpoint.accessToken ? { accessToken: endpoint.accessToken } : {}),
        messages: request.messages,
        max_tokens: Math.min(request.options.max_tokens ?? cap, cap),
        ...(request.options.temperature !== undefined ? { temperature: request.options.temperature } : {}),
        ...(request.options.top_p !== undefined ? { top_p: request.options.top_p } : {}),
        ...(request.options.stop !== undefined ? { stop: request.options.stop } : {}),
      },
      { signal },
    );
    const choice = out.choices?.[0];
    return {
      content: typeof choice?.message?.content === 'string' ? choice.message.content : '',
      finish_reason: choice?.finish_reason ?? null,
      usage: out.usage
        ? { prompt_tokens: out.usage.prompt_tokens, completion_tokens: out.usage.completion_tokens }
        : null,
    };
  };
}
