// builtin:choice — multiple choice: the letter the response commits to equals the reference letter.
import type { VerifierInput, VerifierResult } from '@cgrpo/contract';
import { z } from 'zod';
import { boxedContents } from '../text';

export const ChoiceConfigSchema = z.strictObject({
  /** The option letters, in order. */
  letters: z
    .string()
    .regex(/^[A-Za-z]{2,26}$/, 'must be 2 to 26 letters, e.g. "ABCD"')
    .default('ABCDEFGHIJ'),
});
export type ChoiceConfig = z.output<typeof ChoiceConfigSchema>;

function letterOf(text: string, letters: string): string | null {
  const t = text
    .replace(/\\text(?:bf|rm)?\{([^{}]*)\}/g, '$1')
    .replace(/[*$]/g, '')
    .trim();
  const m = /^\(?\s*([A-Za-z])\s*\)?(?:[.:)\]]|\s|$)/.exec(t);
  if (!m) return null;
  const letter = m[1].toUpperCase();
  return letters.toUpperCase().includes(letter) ? letter : null;
}

/** The committed letter: last \boxed{}, else the last "answer is (X)" phrase, else a final-line "(X)" / "X". */
export function extractChoice(response: string, letters: string): { letter: string; from: string } | null {
  const boxed = boxedContents(response);
  for (let i = boxed.length - 1; i >= 0; i--) {
    const letter = letterOf(boxed[i], letters);
    if (letter) return { letter, from: 'boxed' };
  }
  const phrase = /answer\s*(?:is|:)?\s*:?\s*(?:option\s+)?(\**\(?\s*[A-Za-z]\s*\)?\**)(?![A-Za-z])/gi;
  let fromPhrase: string | null = null;
  for (const m of response.matchAll(phrase)) fromPhrase = letterOf(m[1], letters) ?? fromPhrase;
  if (fromPhrase) return { letter: fromPhrase, from: 'answer_phrase' };
  const lines = response.split(/\r?\n/).filter((l) => l.trim() !== '');
  const lastLine = lines.length > 0 ? lines[lines.length - 1].trim() : '';
  if (/^\(?\s*[A-Za-z]\s*\)?[.)]?$/.test(lastLine.replace(/[*$]/g, ''))) {
    const letter = letterOf(lastLine, letters);
    if (letter) return { letter, from: 'last_line' };
  }
  return null;
}

export function verifyChoice(
  input: Pick<VerifierInput, 'response' | 'reference'>,
  config: ChoiceConfig,
): VerifierResult {
  const reference = letterOf(input.reference, config.letters);
  if (!reference) {
    return {
      score: 0,
      correct: false,
      details: {
        extracted: null,
        reason: `the reference ${JSON.stringify(input.reference)} is not one of the letters ${config.letters}`,
      },
    };
  }
  const choice = extractChoice(input.response, config.letters);
  if (!choice)
    return {
      score: 0,
      correct: false,
      details: { extracted: null, reference, reason: 'no choice letter found' },
    };
  const correct = choice.letter === reference;
  return {
    score: correct ? 1 : 0,
    correct,
    details: { extracted: choice.letter, from: choice.from, reference },
  };
}
