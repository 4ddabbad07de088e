// The chat messages the policy sees: the training prompt (§1.1) and the refinement prompt (§1.4).
// Both templates are job hyperparameters (`prompt_template`, `refinement_prompt_template`); their
// defaults live in the contract so API, runner and docs show the same text.
import {
  DEFAULT_PROMPT_TEMPLATE,
  DEFAULT_REFINEMENT_PROMPT_TEMPLATE,
  DEFAULT_SYSTEM_PROMPT,
} from '@cgrpo/contract';

export { DEFAULT_PROMPT_TEMPLATE, DEFAULT_REFINEMENT_PROMPT_TEMPLATE, DEFAULT_SYSTEM_PROMPT };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export const PROMPT_PLACEHOLDERS = ['question'] as const;
export const REFINEMENT_PLACEHOLDERS = ['question', 'previous_solution', 'critique'] as const;

/**
 * Replaces `{name}` for the given names in one pass: text inserted for one placeholder is never
 * scanned again (a critique quoting "{question}" stays as it is), and other braces (LaTeX such as
 * `\boxed{}` or `\frac{a}{b}`) are left alone.
 */
export function fillTemplate(template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(/\{([a-z_]+)\}/g, (whole, name: string) =>
    Object.hasOwn(values, name) ? values[name] : whole,
  );
}

/** Placeholders of `names` the template lacks, as messages. */
export function missingPlaceholders(template: string, names: readonly string[]): string[] {
  return names.filter((n) => !template.includes(`{${n}}`)).map((n) => `must contain the placeholder {${n}}`);
}

export interface PromptOptions {
  systemPrompt?: string;
  /** The user message; `{question}` is replaced by the problem text. */
  template?: string;
}

/** §1.1: system message, then the problem with the step-by-step / \boxed{} instruction. */
export function buildPromptMessages(problem: string, options: PromptOptions = {}): ChatMessage[] {
  const template = options.template ?? DEFAULT_PROMPT_TEMPLATE;
  const problems = missingPlaceholders(template, PROMPT_PLACEHOLDERS);
  if (problems.length > 0) throw new Error(`prompt_template: ${problems.join('; ')}`);
  const system = options.systemPrompt ?? DEFAULT_SYSTEM_PROMPT;
  return [
    ...(system ? [{ role: 'system' as const, content: system }] : []),
    { role: 'user', content: fillTemplate(template, { question: problem }) },
  ];
}

export interface RefinementPromptInput {
  /** The raw problem text (not the chat-formatted prompt). */
  question: string;
  /** The decoded initial response. */
  previousSolution: string;
  critique: string;
}

/** §1.4: system message + one user message with Question, Previous Solution and Critique. */
export function buildRefinementMessages(
  input: RefinementPromptInput,
  options: { template?: string; systemPrompt?: string } = {},
): ChatMessage[] {
  const template = options.template ?? DEFAULT_REFINEMENT_PROMPT_TEMPLATE;
  const problems = missingPlaceholders(template, REFINEMENT_PLACEHOLDERS);
  if (problems.length > 0) throw new Error(`refinement_prompt_template: ${problems.join('; ')}`);
  const system = options.systemPrompt ?? DEFAULT_SYSTEM_PROMPT;
  return [
    ...(system ? [{ role: 'system' as const, content: system }] : []),
    {
      role: 'user',
      content: fillTemplate(template, {
        question: input.question,
        previous_solution: input.previousSolution,
        critique: input.critique,
      }),
    },
  ];
}
