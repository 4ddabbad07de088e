// Evaluation: k samples per validation prompt, each verified with the job's verifier. Used at
// evaluation points of training jobs (metrics only) and by `algorithm: 'evaluate'` jobs, which
// also store every response in the rollout store. No training, no state: the same model, examples
// and seed give the same results.
import type { JobSpec } from '@cgrpo/contract';
import { buildPromptMessages } from '../algo/prompt';
import type { CausalLM } from '../model/model';
import { generate } from '../rollout/generate';
import { streamSeed } from './batch';
import type { Example } from './dataset';
import type { VerifyFn } from './plugins';

export interface EvaluationOptions {
  samplesPerPrompt: number;
  /** 0 = greedy */
  temperature: number;
  topP: number;
  /** evaluate the first N examples (null = all) */
  maxPrompts: number | null;
  seed: number;
  maxNewTokens: number;
  maxPromptTokens: number;
  systemPrompt: string;
  promptTemplate: string;
}

/** One response of an evaluation, as the rollout store keeps it. */
/** A job's evaluation settings (the same for every job kind), seeded per step. */
export function specEvaluationOptions(spec: JobSpec, step: number): EvaluationOptions {
  const ev = spec.evaluation;
  const hp = spec.hyperparameters;
  return {
    samplesPerPrompt: ev.samples_per_prompt,
    temperature: ev.temperature,
    topP: ev.top_p,
    maxPrompts: ev.max_prompts,
    seed: streamSeed(spec.seed, 'eval', step),
    maxNewTokens: hp.max_response_tokens,
    maxPromptTokens: hp.max_prompt_tokens,
    systemPrompt: hp.system_prompt,
    promptTemplate: hp.prompt_template,
  };
}

export interface EvaluationRecord {
  step: number;
  kind: 'evaluation';
  prompt_index: number;
  row: number;
  sample: number;
  prompt: string;
  response: string;
  reference: string;
  reward: number | null;
  correct: boolean | null;
  verifier: Record<string, unknown> | null;
  missing_reason?: string;
  length: number;
  finish_reason: string;
}

export interface EvaluationResult {
  values: Record<string, number | null>;
  records: EvaluationRecord[];
}

function mean(xs: readonly number[]): number | null {
  return xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/**
 * pass@k by the unbiased estimator of Chen et al. (2021): 1 − C(n−c, k) / C(n, k) per prompt, for
 * n samples of which c are correct, averaged over prompts.
 */
export function passAtK(correctPerPrompt: readonly number[], n: number, k: number): number | null {
  if (correctPerPrompt.length === 0 || k > n) return null;
  const per = correctPerPrompt.map((c) => {
    if (n - c < k) return 1;
    let fail = 1;
    for (let i = n - c + 1; i <= n; i++) fail *= 1 - k / i;
    return 1 - fail;
  });
  return mean(per);
}

export async function evaluatePolicy(
  model: CausalLM,
  verify: VerifyFn,
  examples: readonly Example[],
  step: number,
  opts: EvaluationOptions,
): Promise<EvaluationResult> {
  const rows = examples.slice(0, opts.maxPrompts ?? examples.length);
  const k = opts.samplesPerPrompt;
  const prompts = rows.map((ex) => {
    const text = model.tokenizer.applyChatTemplate(
      buildPromptMessages(ex.question, { systemPrompt: opts.systemPrompt, template: opts.promptTemplate }),
      { addGenerationPrompt: true },
    );
    return { text, tokens: model.tokenizer.encode(text).slice(-opts.maxPromptTokens) };
  });
  const t0 = performance.now();
  const completions = await generate(
    model,
    prompts.map((p) => p.tokens),
    {
      maxNewTokens: opts.maxNewTokens,
      n: k,
      temperature: opts.temperature,
      topP: opts.topP,
      seed: opts.seed,
    },
  );
  const results = await Promise.all(
    completions.map((c) =>
      verify({
        question: rows[c.prompt].question,
        response: c.text,
        reference: rows[c.prompt].reference,
        metadata: {},
      }),
    ),
  );
  const correct: number[] = results.map((r) => (r.ok && r.value.correct ? 1 : 0));
  const correctPerPrompt = rows.map((_, q) => correct.slice(q * k, (q + 1) * k).reduce((a, b) => a + b, 0));
  const lengths = completions.map((c) => c.tokens.length);
  const values: Record<string, number | null> = {
    'eval/pass@1': mean(correct),
    'eval/reward/mean': mean(results.filter((r) => r.ok).map((r) => (r.ok ? r.value.score : 0))),
    'eval/response_length/mean': mean(lengths),
    'eval/prompts': rows.length,
    'eval/samples': completions.length,
    'eval/generated_tokens': lengths.reduce((a, b) => a + b, 0),
    'eval/verifier_failures': results.filter((r) => !r.ok).length,
    'eval/seconds': (performance.now() - t0) / 1000,
  };
  if (k > 1) values[`eval/pass@${k}`] = passAtK(correctPerPrompt, k, k);
  const records = completions.map((c, j): EvaluationRecord => {
    const r = results[j];
    return {
      step,
      kind: 'evaluation',
      prompt_index: c.prompt,
      row: rows[c.prompt].line,
      sample: c.sample,
      prompt: prompts[c.prompt].text,
      response: c.text,
      reference: rows[c.prompt].reference,
      reward: r.ok ? r.value.score : null,
      correct: r.ok ? r.value.correct : null,
      verifier: r.ok ? r.value.details : null,
      ...(r.ok ? {} : { missing_reason: r.reason }),
      length: c.tokens.length,
      finish_reason: c.finishReason,
    };
  });
  return { values, records };
}
