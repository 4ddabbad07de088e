import { defineCritic } from '@cgrpo/plugins/sdk';
import * as z from '@cgrpo/plugins/sdk/zod';

// A rubric grader: the LLM sees the question, the response, whether the verifier accepted it and
// the rubric, and writes a short critique that points at the first wrong step (Critique-GRPO §8.7:
// critiques that locate the error help refinements more than ones that only give the answer).
const DEFAULT_RUBRIC = [
  'You review a student solution.',
  'Point at the first step that is wrong and say why, in at most three sentences.',
  'Do not write a full solution.',
].join(' ');

export default defineCritic({
  config: z.object({
    rubric: z.string().min(1).max(4000).default(DEFAULT_RUBRIC),
    /** Let the critic see and mention the reference answer. */
    reveal_reference: z.boolean().default(false),
    max_tokens: z.number().int().min(16).max(1024).default(256),
  }),
  async critique(input, ctx) {
    if (input.verification.correct) return { critique: 'The response is correct.' };
    const user = [
      `Question:\n${input.question}`,
      `Response:\n${input.response}`,
      ctx.config.reveal_reference ? `Reference answer: ${input.reference}` : '',
      'The automatic check marked the response incorrect.',
    ]
      .filter(Boolean)
      .join('\n\n');
    const answer = await ctx.llm.chat(
      [
        { role: 'system', content: ctx.config.rubric },
        { role: 'user', content: user },
      ],
      { max_tokens: ctx.config.max_tokens, temperature: 0 },
    );
    const critique = answer.content.trim();
    if (!critique) {
      ctx.log.warn('the LLM returned an empty critique; falling back to a generic one');
      return { critique: 'The response is incorrect; re-check each step.' };
    }
    return { critique };
  },
});
