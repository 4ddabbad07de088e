// builtin:regex — a regular expression either extracts the answer (compared to the reference) or
// must simply match the response. `{reference}` in the pattern is replaced by the escaped reference.
import type { VerifierInput, VerifierResult } from '@cgrpo/contract';
import { z } from 'zod';
import { normalizeText } from '../text';

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

function compile(pattern: string, flags: string, reference: string): RegExp {
  return new RegExp(
    pattern.replaceAll('{reference}', escapeRegExp(reference)),
    flags.includes('g') ? flags : `${flags}g`,
  );
}

export const RegexConfigSchema = z
  .strictObject({
    /** JavaScript regular expression. In `extract` mode, the group named `answer` or else group 1 is the answer. */
    pattern: z.string().min(1).max(2_000),
    flags: z
      .string()
      .regex(/^[imsuy]*$/, "may contain only the flags i, m, s, u, y ('g' is implied)")
      .default(''),
    /** extract: the last match's answer group must equal the reference; match: the response must match. */
    mode: z.enum(['extract', 'match']).default('extract'),
    case_sensitive: z.boolean().default(false),
    strip_formatting: z.boolean().default(true),
    /** Only the last this-many characters are searched (bounds the cost of a pathological pattern). */
    max_response_chars: z.number().int().min(1).max(1_000_000).default(20_000),
  })
  .superRefine((config, ctx) => {
    try {
      compile(config.pattern, config.flags, 'x');
    } catch (error) {
      ctx.addIssue({
        code: 'custom',
        path: ['pattern'],
        message: `not a valid regular expression: ${(error as Error).message}`,
      });
    }
  });
export type RegexConfig = z.output<typeof RegexConfigSchema>;

export function verifyRegex(
  input: Pick<VerifierInput, 'response' | 'reference'>,
  config: RegexConfig,
): VerifierResult {
  const response = input.response.slice(-config.max_response_chars);
  const re = compile(config.pattern, config.flags, input.reference);
  let last: RegExpExecArray | null = null;
  for (let m = re.exec(response); m !== null; m = re.exec(response)) {
    last = m;
    if (m[0] === '') re.lastIndex++;
  }
  if (config.mode === 'match') {
    return { score: last ? 1 : 0, correct: last !== null, details: { matched: last ? last[0] : null } };
  }
  if (!last)
    return { score: 0, correct: false, details: { extracted: null, reason: 'the pattern did not match' } };
  const extracted = last.groups?.answer ?? last[1] ?? last[0];
  const options = { caseSensitive: config.case_sensitive, stripFormatting: config.strip_formatting };
  const correct = normalizeText(extracted, options) === normalizeText(input.reference, options);
  return { score: correct ? 1 : 0, correct, details: { extracted } };
}
