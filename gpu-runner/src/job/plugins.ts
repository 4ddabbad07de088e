// The job's verifier and critic as two async functions over the built-ins of @cgrpo/plugins
// (run natively in the runner). Published plugins need the plugin sandbox; until the runner hosts
// it, a job naming one fails with a clear `plugin_not_supported`. A call that throws or times out
// gives a missing value with a reason, never NaN: the training loop leaves that sample out.
import type {
  CriticInput,
  CriticResult,
  JobPluginUse,
  JobSpec,
  VerifierInput,
  VerifierResult,
} from '@cgrpo/contract';
import {
  type ChatMessage,
  type GenerateOptions,
  getBuiltinCritic,
  getBuiltinVerifier,
} from '@cgrpo/plugins/builtin';
import { JobError } from './types';

export type Outcome<T> = { ok: true; value: T; ms: number } | { ok: false; reason: string; ms: number };
export type VerifyFn = (input: VerifierInput) => Promise<Outcome<VerifierResult>>;
export type CritiqueFn = (input: CriticInput) => Promise<Outcome<CriticResult>>;

export interface JobPlugins {
  verify: VerifyFn;
  /** null for grpo. */
  critique: CritiqueFn | null;
}

/** What the runner lends critics: the policy's own generation (builtin:self). */
export type PolicyGenerate = (messages: ChatMessage[], options: GenerateOptions) => Promise<string>;

function guarded<I, O>(
  fn: (input: I, signal: AbortSignal) => Promise<O>,
  timeoutMs: number,
): (input: I) => Promise<Outcome<O>> {
  return async (input) => {
    const t0 = performance.now();
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          abort.abort();
          reject(new Error(`timed out after ${timeoutMs} ms`));
        }, timeoutMs);
      });
      const value = await Promise.race([fn(input, abort.signal), timeout]);
      return { ok: true, value, ms: performance.now() - t0 };
    } catch (e) {
      return { ok: false, reason: e instanceof Error ? e.message : String(e), ms: performance.now() - t0 };
    } finally {
      clearTimeout(timer);
    }
  };
}

function notSupported(role: string, use: JobPluginUse): JobError {
  return new JobError(
    'plugin_not_supported',
    `${role}.plugin: ${use.plugin}: published plugins need the plugin sandbox, which this runner does not host yet; use a builtin:* ${role}`,
  );
}

/** Builds a built-in, turning its config errors into a job error that names the field. */
function build<T>(role: string, make: () => T): T {
  try {
    return make();
  } catch (e) {
    const err = e as Error & { code?: string; fields?: { path: string; message: string }[] };
    const fields = err.fields?.map((f) => `${role}.${f.path}: ${f.message}`).join('; ');
    throw new JobError(
      err.code === 'unknown_plugin' ? 'plugin_unknown' : 'plugin_config_invalid',
      fields || `${role}: ${err.message}`,
    );
  }
}

export function resolvePlugins(
  spec: JobSpec,
  options: { generate?: PolicyGenerate; timeoutMs?: number } = {},
): JobPlugins {
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!spec.verifier.plugin.startsWith('builtin:')) throw notSupported('verifier', spec.verifier);
  const verifier = build('verifier', () => getBuiltinVerifier(spec.verifier.plugin, spec.verifier.config));
  const verify = guarded((input: VerifierInput) => verifier.verify(input), timeoutMs);
  let critique: CritiqueFn | null = null;
  if (spec.critic) {
    const use = spec.critic;
    if (!use.plugin.startsWith('builtin:')) throw notSupported('critic', use);
    if (use.plugin === 'builtin:llm' && !use.grants.includes('llm.chat')) {
      throw new JobError(
        'plugin_capability_not_granted',
        "critic.grants: builtin:llm calls an LLM endpoint; add 'llm.chat' to critic.grants",
      );
    }
    const critic = build('critic', () =>
      getBuiltinCritic(use.plugin, use.config, {
        env: process.env,
        ...(options.generate ? { generate: options.generate } : {}),
      }),
    );
    // LLM critics have their own timeout and retries (config.timeout_ms); this bound only stops a hang
    const critiqueTimeout =
      use.plugin === 'builtin:llm' || use.plugin === 'builtin:self' ? 15 * 60_000 : timeoutMs;
    critique = guarded(
      async (input: CriticInput, signal) => ({
        critique: (await critic.critique(input, { signal })).critique,
      }),
      critiqueTimeout,
    );
  }
  if (spec.shaping && spec.shaping.plugin !== 'builtin:expression') {
    throw new JobError(
      'plugin_not_supported',
      `shaping.plugin: ${spec.shaping.plugin}: shaping functions are declarative expressions; use builtin:expression`,
    );
  }
  return { verify, critique };
}
