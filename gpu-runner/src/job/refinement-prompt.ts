// The refinement prompt under its own token budget (critique-grpo.md §1.4). Everything the policy
// needs to refine stays whole: the system prompt, the chat template, the question and the critique.
// Only the previous solution gives way, cut in its middle with an explicit marker, so its opening
// (the approach) and its end (the answer the critique talks about) both remain. Critiques longer
// than max_critique_tokens are cut the same way before they get here.
import type { Hyperparameters } from '@cgrpo/contract';
import { buildRefinementMessages } from '../algo/prompt';
import type { ModelTokenizer } from '../model/tokenizer';
import { JobError } from './types';

export interface BudgetedPrompt {
  text: string;
  tokens: number[];
  /** the previous solution (or the critique) was shortened to fit */
  truncated: boolean;
}

export interface RefinementBudget {
  /** whole refinement prompt, in tokens */
  maxTokens: number;
  maxCritiqueTokens: number;
  systemPrompt: string;
  template: string;
}

/** The marker left where tokens were cut out of the middle of a text. */
export function omissionMarker(omitted: number): string {
  return `\n[... ${omitted} tokens omitted ...]\n`;
}

/** `text` shortened to at most `maxTokens` tokens by cutting its middle (unchanged when it fits). */
export function shortenMiddle(
  tokenizer: ModelTokenizer,
  text: string,
  maxTokens: number,
): { text: string; truncated: boolean } {
  const ids = tokenizer.encode(text);
  if (ids.length <= maxTokens) return { text, truncated: false };
  const marker = omissionMarker(ids.length - maxTokens);
  const room = Math.max(0, maxTokens - tokenizer.encode(marker).length);
  const head = Math.ceil(room / 2);
  const tail = room - head;
  const kept = tokenizer.decode(ids.slice(0, head)) + marker + tokenizer.decode(ids.slice(ids.length - tail));
  return { text: kept, truncated: true };
}

function render(
  tokenizer: ModelTokenizer,
  b: RefinementBudget,
  question: string,
  previousSolution: string,
  critique: string,
): { text: string; tokens: number[] } {
  const messages = buildRefinementMessages(
    { question, previousSolution, critique },
    { template: b.template, systemPrompt: b.systemPrompt },
  );
  const text = tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
  return { text, tokens: tokenizer.encode(text) };
}

/** Tokens of everything but the question, previous solution and critique (the fixed parts). */
export function fixedRefinementTokens(tokenizer: ModelTokenizer, b: RefinementBudget): number {
  return render(tokenizer, b, '', '', '').tokens.length;
}

/**
 * The budget of a job: `max_refinement_prompt_tokens`, or when null one that always holds the
 * question's prompt budget, a whole response and a whole critique besides the fixed parts.
 * Fails the job before its first step when the fixed parts alone do not fit.
 */
export function refinementBudget(tokenizer: ModelTokenizer, hp: Hyperparameters): RefinementBudget {
  const base = {
    maxTokens: 0,
    maxCritiqueTokens: hp.max_critique_tokens,
    systemPrompt: hp.system_prompt,
    template: hp.refinement_prompt_template,
  };
  const fixed = fixedRefinementTokens(tokenizer, base);
  const maxTokens =
    hp.max_refinement_prompt_tokens ??
    fixed + hp.max_prompt_tokens + hp.max_response_tokens + hp.max_critique_tokens;
  if (fixed >= maxTokens) {
    throw new JobError(
      'refinement_prompt_too_long',
      `hyperparameters.max_refinement_prompt_tokens: the system prompt, refinement template and chat template alone take ${fixed} tokens of this model, more than the budget of ${maxTokens}; raise it or set it to null`,
    );
  }
  return { ...base, maxTokens };
}

/**
 * The refinement prompt within budget, or null when even an empty previous solution leaves no room
 * for the question and critique (the refinement is then skipped with that reason).
 */
export function buildRefinementPrompt(
  tokenizer: ModelTokenizer,
  b: RefinementBudget,
  input: { question: string; previousSolution: string; critique: string },
): BudgetedPrompt | null {
  const critique = shortenMiddle(tokenizer, input.critique, b.maxCritiqueTokens);
  let truncated = critique.truncated;
  let prompt = render(tokenizer, b, input.question, input.previousSolution, critique.text);
  // token boundaries can move by a few tokens when the text is re-joined: shrink until it fits
  let target = tokenizer.encode(input.previousSolution).length;
  for (let attempt = 0; prompt.tokens.length > b.maxTokens && target > 0 && attempt < 8; attempt++) {
    target = Math.max(0, target - (prompt.tokens.length - b.maxTokens));
    const solution = shortenMiddle(tokenizer, input.previousSolution, target).text;
    truncated = true;
    prompt = render(tokenizer, b, input.question, solution, critique.text);
  }
  if (prompt.tokens.length > b.maxTokens) {
    const bare = render(tokenizer, b, input.question, '', critique.text);
    if (bare.tokens.length > b.maxTokens) return null;
    return { ...bare, truncated: true };
  }
  return { ...prompt, truncated };
}
