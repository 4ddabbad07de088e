// One record per question of a step, carried through the phases of TrainingLoop.step: the prompt,
// the initial samples with their verdicts, the critiques, the refinements (with the prompt each was
// sampled from) and the assembled group. Step metrics and rollout records are pure functions of
// these records.
import type { VerifierResult } from '@cgrpo/contract';
import type { SequenceKind } from '../algo/aggregate';
import type { AssembledGroup } from '../algo/group';
import type { MaybeReward } from '../algo/rewards';
import type { Completion } from '../rollout/generate';
import type { Example } from './dataset';
import type { Outcome } from './plugins';
import type { BudgetedPrompt } from './refinement-prompt';

export interface PromptTokens {
  text: string;
  tokens: number[];
}

export interface Sample {
  completion: Completion;
  result: Outcome<VerifierResult>;
}

/** Where a critique came from: the job's critic, or the ground-truth template after the critic failed. */
export type CritiqueSource = 'critic' | 'fallback';

export interface Critique {
  text: string;
  source: CritiqueSource;
  /** Tokens an LLM critic spent on it (what `budget/critic_tokens` sums); 0 for other critics. */
  llmTokens: number;
}

export interface Refinement {
  /** The refinement prompt (question, previous solution, critique) the sample was drawn from. */
  prompt: BudgetedPrompt;
  completion: Completion;
  result: Outcome<VerifierResult>;
}

export interface QuestionGroup {
  /** Position of the question in the step (0-based). */
  index: number;
  /** Row of the training set. */
  row: number;
  example: Example;
  prompt: PromptTokens;
  initial: Sample[];
  /** Critiques and refinements were requested for this question. */
  triggered: boolean;
  /** Per initial sample (same index): the critique, or null when there is none. */
  critiques: (Critique | null)[];
  /** Per initial sample: the refinement, or null with `refinementMissing[i]` saying why. */
  refinements: (Refinement | null)[];
  refinementMissing: (string | null)[];
  assembled: AssembledGroup | null;
}

/** Calls, failures and latencies of one plugin role in one step; `first` is the first failure's reason. */
export interface PluginCounters {
  failures: number;
  calls: number;
  ms: number[];
  first?: { reason: string; code?: string };
}

export function newCounters(): PluginCounters {
  return { failures: 0, calls: 0, ms: [] };
}

export function countOutcome(counters: PluginCounters, o: Outcome<unknown>): void {
  counters.calls++;
  counters.ms.push(o.ms);
  if (!o.ok) {
    counters.failures++;
    counters.first ??= { reason: o.reason, code: 'code' in o ? (o.code as string | undefined) : undefined };
  }
}

export function rewardOf(r: Outcome<{ score: number }>): MaybeReward {
  return r.ok ? r.value.score : { missing: true, reason: `verifier: ${r.reason}` };
}

export function initialRewards(g: QuestionGroup): MaybeReward[] {
  return g.initial.map((s) => rewardOf(s.result));
}

export function refinementRewards(g: QuestionGroup): MaybeReward[] {
  return g.refinements.map((r, i) =>
    r
      ? rewardOf(r.result)
      : { missing: true as const, reason: g.refinementMissing[i] ?? 'refinement missing' },
  );
}

export function mean(xs: readonly number[]): number | null {
  return xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length;
}

export function std(xs: readonly number[]): number | null {
  const m = mean(xs);
  if (m === null) return null;
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length);
}

/** The algorithm's metrics of one step (rewards, refinements, plugins, groups). */
export function groupMetrics(
  groups: readonly QuestionGroup[],
  counters: { verifier: PluginCounters; critic: PluginCounters },
): Record<string, number | null> {
  const initial = groups.flatMap((g) => g.initial);
  const verified = initial.flatMap((s) => (s.result.ok ? [s.result.value] : []));
  const refinements = groups.flatMap((g) => g.refinements).filter((r): r is Refinement => r !== null);
  const refinedOk = refinements.flatMap((r) => (r.result.ok ? [r.result.value] : []));
  const critiques = groups.flatMap((g) => g.critiques).filter((c): c is Critique => c !== null);
  const lengths = initial.map((s) => s.completion.tokens.length);
  const { verifier, critic } = counters;
  return {
    'reward/mean': mean(verified.map((v) => v.score)),
    'reward/std': std(verified.map((v) => v.score)),
    'pass@1/train': mean(verified.map((v) => (v.correct ? 1 : 0))),
    'refinement/triggered': groups.filter((g) => g.triggered).length,
    'refinement/generated': refinements.length,
    'refinement/success_rate':
      refinedOk.length > 0 ? refinedOk.filter((v) => v.correct).length / refinedOk.length : null,
    'refinement/selected': groups.reduce((a, g) => a + (g.assembled?.admittedRefinements.length ?? 0), 0),
    'refine/truncated_fraction':
      refinements.length > 0
        ? refinements.filter((r) => r.prompt.truncated).length / refinements.length
        : null,
    'critique/calls': critic.calls,
    'critique/failures': critic.failures,
    'critique/fallbacks': critiques.filter((c) => c.source === 'fallback').length,
    'critique/latency_ms': mean(critic.ms),
    'budget/critic_tokens': critiques.reduce((a, c) => a + c.llmTokens, 0),
    'verifier/calls': verifier.calls,
    'verifier/failures': verifier.failures,
    'verifier/latency_ms': mean(verifier.ms),
    'response_length/mean': mean(lengths),
    'response_length/max': lengths.length ? Math.max(...lengths) : null,
    'groups/zero_signal': groups.filter((g) => g.assembled?.zeroSignal).length,
  };
}

export interface RolloutRecord {
  step: number;
  prompt_index: number;
  row: number;
  kind: SequenceKind;
  sample: number;
  /** The prompt the response was sampled from (for a refinement: the refinement prompt with the critique). */
  prompt: string;
  /** The context the sequence was trained under (refinements: the original prompt, without the critique). */
  trained_prompt: string;
  response: string;
  reward: number | null;
  correct: boolean | null;
  verifier: Record<string, unknown> | null;
  missing_reason?: string;
  critique?: string | null;
  critique_source?: CritiqueSource | null;
  selected?: boolean;
  refinement_prompt_truncated?: boolean;
  advantage: number | null;
  length: number;
  finish_reason: string;
}

/** Every sample of the step as the rollout store keeps it. */
export function rolloutRecords(step: number, groups: readonly QuestionGroup[]): RolloutRecord[] {
  const out: RolloutRecord[] = [];
  for (const g of groups) {
    const advantageOf = (kind: SequenceKind, index: number) =>
      g.assembled?.sequences.find((s) => s.kind === kind && s.index === index)?.advantage ?? null;
    const verdict = (r: Outcome<VerifierResult>) => ({
      reward: r.ok ? r.value.score : null,
      correct: r.ok ? r.value.correct : null,
      verifier: r.ok ? r.value.details : null,
      ...(r.ok ? {} : { missing_reason: r.reason }),
    });
    const base = { step, prompt_index: g.index, row: g.example.line, trained_prompt: g.prompt.text };
    g.initial.forEach((s, i) => {
      out.push({
        ...base,
        kind: 'initial',
        sample: i,
        prompt: g.prompt.text,
        response: s.completion.text,
        ...verdict(s.result),
        critique: g.critiques[i]?.text ?? null,
        advantage: advantageOf('initial', i),
        length: s.completion.tokens.length,
        finish_reason: s.completion.finishReason,
      });
    });
    g.refinements.forEach((r, i) => {
      if (!r) return;
      out.push({
        ...base,
        kind: 'refinement',
        sample: i,
        prompt: r.prompt.text,
        response: r.completion.text,
        ...verdict(r.result),
        critique: g.critiques[i]?.text ?? null,
        critique_source: g.critiques[i]?.source ?? null,
        selected: g.assembled?.admittedRefinements.includes(i) ?? false,
        refinement_prompt_truncated: r.prompt.truncated,
        advantage: advantageOf('refinement', i),
        length: r.completion.tokens.length,
        finish_reason: r.completion.finishReason,
      });
    });
  }
  return out;
}
