// The job's verifier and critic as two async functions. Built-ins run natively in the runner;
// published plugins need the plugin sandbox, and until the runner hosts it a job naming one fails
// with a clear `plugin_not_supported`. A call that throws gives a missing value with a reason,
// never NaN: the training loop leaves that sample out of the step.
import type {
  CriticInput,
  CriticResult,
  JobPluginUse,
  JobSpec,
  VerifierInput,
  VerifierResult,
} from '@cgrpo/contract';
import {
  GroundTruthConfigSchema,
  groundTruthCritique,
  IndicativeConfigSchema,
  indicativeCritique,
} from '../../../plugins/builtin/critics/rule';
import { parseConfig } from '../../../plugins/builtin/errors';
import { verifyMath } from '../../../plugins/builtin/math/index';
import { ChoiceConfigSchema, verifyChoice } from '../../../plugins/builtin/verifiers/choice';
import { ExactConfigSchema, verifyExact } from '../../../plugins/builtin/verifiers/exact';
import { RegexConfigSchema, verifyRegex } from '../../../plugins/builtin/verifiers/regex';
import { JobError } from './types';

export type Outcome<T> = { ok: true; value: T; ms: number } | { ok: false; reason: string; ms: number };
export type VerifyFn = (input: VerifierInput) => Promise<Outcome<VerifierResult>>;
export type CritiqueFn = (input: CriticInput) => Promise<Outcome<CriticResult>>;

export interface JobPlugins {
  verify: VerifyFn;
  /** null for grpo. */
  critique: CritiqueFn | null;
}

function guarded<I, O>(
  fn: (input: I) => O | Promise<O>,
  timeoutMs: number,
): (input: I) => Promise<Outcome<O>> {
  return async (input) => {
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      });
      const value = await Promise.race([Promise.resolve().then(() => fn(input)), timeout]);
      return { ok: true, value, ms: performance.now() - t0 };
    } catch (e) {
      return { ok: false, reason: e instanceof Error ? e.message : String(e), ms: performance.now() - t0 };
    } finally {
      clearTimeout(timer);
    }
  };
}

function configError(role: string, e: unknown): JobError {
  return new JobError(
    'plugin_config_invalid',
    `${role}.config: ${e instanceof Error ? e.message : String(e)}`,
  );
}

function builtinVerifier(use: JobPluginUse): (input: VerifierInput) => VerifierResult {
  const name = use.plugin.slice('builtin:'.length);
  try {
    switch (name) {
      case 'math': {
        const config = use.config;
        return (input) => {
          const r = verifyMath({ response: input.response, reference: input.reference }, config);
          return { score: r.score, correct: r.correct, details: { ...r.details } };
        };
      }
      case 'exact': {
        const c = parseConfig(use.plugin, ExactConfigSchema, use.config);
        return (input) => verifyExact(input, c);
      }
      case 'regex': {
        const c = parseConfig(use.plugin, RegexConfigSchema, use.config);
        return (input) => verifyRegex(input, c);
      }
      case 'choice': {
        const c = parseConfig(use.plugin, ChoiceConfigSchema, use.config);
        return (input) => verifyChoice(input, c);
      }
    }
  } catch (e) {
    throw configError('verifier', e);
  }
  throw new JobError(
    'plugin_unknown',
    `verifier.plugin: ${use.plugin} is not a built-in verifier (math, exact, regex, choice)`,
  );
}

function builtinCritic(use: JobPluginUse): (input: CriticInput) => CriticResult {
  const name = use.plugin.slice('builtin:'.length);
  try {
    switch (name) {
      case 'indicative': {
        const c = parseConfig(use.plugin, IndicativeConfigSchema, use.config);
        return (input) => indicativeCritique(input, c);
      }
      case 'ground-truth': {
        const c = parseConfig(use.plugin, GroundTruthConfigSchema, use.config);
        return (input) => groundTruthCritique(input, c);
      }
      case 'llm':
      case 'self':
        throw new JobError(
          'plugin_not_supported',
          `critic.plugin: ${use.plugin} is not yet supported by this runner's training loop; use builtin:ground-truth or builtin:indicative`,
        );
    }
  } catch (e) {
    if (e instanceof JobError) throw e;
    throw configError('critic', e);
  }
  throw new JobError(
    'plugin_unknown',
    `critic.plugin: ${use.plugin} is not a built-in critic (indicative, ground-truth, llm, self)`,
  );
}

function notSupported(role: string, use: JobPluginUse): JobError {
  return new JobError(
    'plugin_not_supported',
    `${role}.plugin: ${use.plugin}: published plugins need the plugin sandbox, which this runner does not host yet; use a builtin:* ${role}`,
  );
}

export function resolvePlugins(spec: JobSpec, timeoutMs = 10_000): JobPlugins {
  if (!spec.verifier.plugin.startsWith('builtin:')) throw notSupported('verifier', spec.verifier);
  const verify = guarded(builtinVerifier(spec.verifier), timeoutMs);
  let critique: CritiqueFn | null = null;
  if (spec.critic) {
    if (!spec.critic.plugin.startsWith('builtin:')) throw notSupported('critic', spec.critic);
    critique = guarded(builtinCritic(spec.critic), timeoutMs);
  }
  if (spec.shaping && spec.shaping.plugin !== 'builtin:expression') {
    throw new JobError(
      'plugin_not_supported',
      `shaping.plugin: ${spec.shaping.plugin}: shaping functions are declarative expressions; use builtin:expression`,
    );
  }
  return { verify, critique };
}
