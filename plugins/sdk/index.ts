// The plugin SDK: what a plugin author imports. `defineVerifier`, `defineCritic` and `defineShaping`
// turn an author's object into the small protocol object the sandbox harness drives
// (plugins/sandbox/harness.ts). This file is bundled INTO every plugin by `cgrpo plugins build`, so it
// must run inside QuickJS: no Node APIs, no imports other than zod and type-only contract imports.
// Bundle size: `z` is a namespace import (`import * as z`), which esbuild tree-shakes member by
// member; `import { z } from 'zod'` would pull in all of zod with its 40 locales (a 30-line critic
// went from 455 KB to ~100 KB). The SDK's own schemas use zod/mini and zod's core functions, so a
// plugin without a config schema carries only the few KB of zod it needs.
import type {
  CriticInput,
  CriticResult,
  PluginKind,
  ShapingConfig,
  VerifierInput,
  VerifierResult,
} from '@cgrpo/contract';
import * as z from 'zod';
import { number, optional, record, strictObject, string } from 'zod/mini';
import { type $ZodType, type output, safeParse, toJSONSchema } from 'zod/v4/core';

export type { CriticInput, CriticResult, ShapingConfig, VerifierInput, VerifierResult };
export { z };

export const SDK_VERSION = '0.1.0';

// ---- what a plugin sees -----------------------------------------------------------------------

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatOptions {
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  stop?: string[];
}

export interface ChatResult {
  content: string;
  finish_reason: string | null;
  usage: { prompt_tokens: number; completion_tokens: number } | null;
}

export interface PluginLogger {
  (...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

export interface PluginContext<Config> {
  /** The job's config for this plugin, already validated by the plugin's own schema. */
  config: Config;
  /** Log lines go to the job's event log (bounded per call), never to the runner's stdout. */
  log: PluginLogger;
  /**
   * Chat with the job's LLM endpoint. Works only when the manifest lists the `llm.chat`
   * capability and the job grants it; otherwise the call rejects with a message saying which.
   * The plugin never sees the endpoint's credentials.
   */
  llm: { chat(messages: ChatMessage[], options?: ChatOptions): Promise<ChatResult> };
}

type Awaitable<T> = T | Promise<T>;

/** What a verifier returns; `details` is optional (defaults to `{}`). */
export type VerifierReturn = Omit<VerifierResult, 'details'> & { details?: Record<string, unknown> };

// ---- the protocol object the sandbox harness drives ----------------------------------------

export interface ConfigIssue {
  path: string;
  message: string;
}

export type ConfigParse<C> = { ok: true; value: C } | { ok: false; issues: ConfigIssue[] };

/** The default export of a plugin bundle. Produced only by the define* functions below. */
export interface PluginDefinition<
  Kind extends PluginKind = PluginKind,
  In = unknown,
  Out = unknown,
  C = unknown,
> {
  readonly __cgrpo_plugin: 1;
  readonly kind: Kind;
  readonly sdk_version: string;
  parseConfig(raw: unknown): ConfigParse<C>;
  configJsonSchema(): Record<string, unknown>;
  run(input: In, ctx: PluginContext<C>): Awaitable<Out>;
  /** Shaping plugins only: the declarative expression and its default params. */
  readonly shaping: ShapingConfig | null;
}

export type VerifierDefinition<C = unknown> = PluginDefinition<'verifier', VerifierInput, VerifierReturn, C>;
export type CriticDefinition<C = unknown> = PluginDefinition<'critic', CriticInput, CriticResult, C>;
export type ShapingDefinition = PluginDefinition<
  'shaping',
  never,
  never,
  { params?: Record<string, number> }
>;

const EmptyConfig = strictObject({});

function configParts<S extends $ZodType>(schema: S) {
  return {
    parseConfig(raw: unknown): ConfigParse<output<S>> {
      const parsed = safeParse(schema, raw ?? {});
      if (parsed.success) return { ok: true, value: parsed.data };
      return {
        ok: false,
        issues: parsed.error.issues.map((issue) => ({
          path: issue.path.map(String).join('.'),
          message: issue.message,
        })),
      };
    },
    configJsonSchema(): Record<string, unknown> {
      return toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
    },
  };
}

export interface VerifierSpec<S extends $ZodType> {
  /** zod schema of the job's `config` for this plugin; exported to JSON Schema in the manifest. */
  config?: S;
  verify(input: VerifierInput, ctx: PluginContext<output<S>>): Awaitable<VerifierReturn>;
}

export function defineVerifier<S extends $ZodType = typeof EmptyConfig>(
  spec: VerifierSpec<S>,
): VerifierDefinition<output<S>> {
  const schema = (spec.config ?? EmptyConfig) as S;
  return {
    __cgrpo_plugin: 1,
    kind: 'verifier',
    sdk_version: SDK_VERSION,
    shaping: null,
    ...configParts(schema),
    run: (input, ctx) => spec.verify(input, ctx),
  };
}

export interface CriticSpec<S extends $ZodType> {
  config?: S;
  critique(input: CriticInput, ctx: PluginContext<output<S>>): Awaitable<CriticResult>;
}

export function defineCritic<S extends $ZodType = typeof EmptyConfig>(
  spec: CriticSpec<S>,
): CriticDefinition<output<S>> {
  const schema = (spec.config ?? EmptyConfig) as S;
  return {
    __cgrpo_plugin: 1,
    kind: 'critic',
    sdk_version: SDK_VERSION,
    shaping: null,
    ...configParts(schema),
    run: (input, ctx) => spec.critique(input, ctx),
  };
}

export interface ShapingSpec {
  /** An expression over `p` (the token probability) and the params, e.g. `p / (p + gamma)`. */
  expression: string;
  /** Default values of the params; a job may override them with `config.params`. */
  params: Record<string, number>;
}

const ShapingJobConfig = strictObject({ params: optional(record(string(), number())) });

/**
 * A shaping plugin is data, not code: the runner reads the expression once and compiles it into
 * the training graph (plugins/builtin/shaping/expression.ts), so nothing runs per token.
 */
export function defineShaping(spec: ShapingSpec): ShapingDefinition {
  return {
    __cgrpo_plugin: 1,
    kind: 'shaping',
    sdk_version: SDK_VERSION,
    shaping: { expression: spec.expression, params: { ...spec.params } },
    ...configParts(ShapingJobConfig),
    run: () => {
      throw new Error('a shaping plugin is an expression and is never called');
    },
  };
}
