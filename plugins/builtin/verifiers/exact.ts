// builtin:exact — the extracted answer equals the reference after string normalisation.
import type { VerifierInput, VerifierResult } from '@cgrpo/contract';
import { z } from 'zod';
import { extractAnswer, normalizeText } from '../text';

export const ExactConfigSchema = z.strictObject({
  /** Where the answer is in the response: auto = last \boxed{}, else "answer: …", else the last line. */
  extract: z.enum(['auto', 'boxed', 'answer_phrase', 'last_line', 'whole']).default('auto'),
  case_sensitive: z.boolean().default(false),
  /** Strip $…$, \text{}, **bold**, quotes and trailing punctuation before comparing. */
  strip_formatting: z.boolean().default(true),
  /** Split the reference on this string into several accepted answers (e.g. "|"); null = one answer. */
  alternatives_separator: z.string().min(1).nullable().default(null),
});
export type ExactConfig = z.output<typeof ExactConfigSchema>;

export function verifyExact(
  input: Pick<VerifierInput, 'response' | 'reference'>,
  config: ExactConfig,
): VerifierResult {
  const options = { caseSensitive: config.case_sensitive, stripFormatting: config.strip_formatting };
  const extracted = extractAnswer(input.response, config.extract);
  const references = (
    config.alternatives_separator === null
      ? [input.reference]
      : input.reference.split(config.alternatives_separator)
  ).map((r) => normalizeText(r, options));
  if (!extracted) {
    return {
      score: 0,
      correct: false,
      details: { extracted: null, reason: `no ${config.extract} answer found` },
    };
  }
  const answer = normalizeText(extracted.text, options);
  const correct = references.includes(answer);
  return {
    score: correct ? 1 : 0,
    correct,
    details: { extracted: extracted.text, from: extracted.from, normalized: answer, references },
  };
}
