// builtin:indicative and builtin:ground-truth — the rule-based critiques of §1.3.
import type { CriticInput, CriticResult } from '@cgrpo/contract';
import { z } from 'zod';

export const IndicativeConfigSchema = z.strictObject({
  correct_text: z.string().min(1).max(2_000).default('The generated solution is correct.'),
  incorrect_text: z.string().min(1).max(2_000).default('The generated solution is incorrect.'),
});
export type IndicativeConfig = z.output<typeof IndicativeConfigSchema>;

export function indicativeCritique(
  input: Pick<CriticInput, 'verification'>,
  config: IndicativeConfig,
): CriticResult {
  return { critique: input.verification.correct ? config.correct_text : config.incorrect_text };
}

export const GroundTruthConfigSchema = z.strictObject({
  /** `{reference}` is replaced by the reference answer. */
  correct_text: z
    .string()
    .min(1)
    .max(2_000)
    .default('The generated solution is correct, the ground truth is {reference}.'),
  incorrect_text: z
    .string()
    .min(1)
    .max(2_000)
    .default('The generated solution is incorrect, the ground truth is {reference}.'),
});
export type GroundTruthConfig = z.output<typeof GroundTruthConfigSchema>;

export const DEFAULT_GROUND_TRUTH_CONFIG: GroundTruthConfig = GroundTruthConfigSchema.parse({});

export function groundTruthCritique(
  input: Pick<CriticInput, 'verification' | 'reference'>,
  config: GroundTruthConfig = DEFAULT_GROUND_TRUTH_CONFIG,
): CriticResult {
  const template = input.verification.correct ? config.correct_text : config.incorrect_text;
  // a function replacement so `$&`-like sequences in the reference are inserted literally
  return { critique: template.replaceAll('{reference}', () => input.reference) };
}
