// The chat messages the policy sees: the training prompt (§1.1) and the refinement prompt (§1.4).
// Both are configurable per job; the defaults are written in this project's own words.

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export const DEFAULT_SYSTEM_PROMPT = 'You are a helpful assistant.';

export const DEFAULT_PROBLEM_INSTRUCTION =
  'Work through the problem step by step, then write your final answer inside \\boxed{}.';

export interface PromptOptions {
  systemPrompt?: string;
  /** Appended to the problem text after a blank line. Empty string = none. */
  instruction?: string;
}

/** System message + the problem followed by the step-by-step / \boxed{} instruction. */
export function buildPromptMessages(problem: string, options: PromptOptions = {}): ChatMessage[] {
  const instruction = options.instruction ?? DEFAULT_PROBLEM_INSTRUCTION;
  return [
    { role: 'system', content: options.systemPrompt ?? DEFAULT_SYSTEM_PROMPT },
    { role: 'user', content: instruction ? `${problem}\n\n${instruction}` : problem },
  ];
}

export const REFINEMENT_PLACEHOLDERS = ['question', 'previous_solution', 'critique'] as const;
export type RefinementField = (typeof REFINEMENT_PLACEHOLDERS)[number];

export const DEFAULT_REFINEMENT_TEMPLATE = `Below is a problem, an earlier attempt at it, and feedback on that attempt.

**Question:**
{{question}}

**Previous Solution:**
{{previous_solution}}

**Critique:**
{{critique}}

Now write a new solution to the question:
- Correct the mistakes the critique points out, if it points out any.
- Reason through the problem step by step.
- Put the final answer inside \\boxed{}.
- Before you finish, make sure every issue raised in the critique has been addressed.`;

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

/** Problems with a refinement template: unknown placeholders, or no {{question}} / {{critique}}. */
export function checkRefinementTemplate(template: string): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const match of template.matchAll(PLACEHOLDER)) {
    const name = match[1];
    seen.add(name);
    if (!(REFINEMENT_PLACEHOLDERS as readonly string[]).includes(name)) {
      problems.push(
        `unknown placeholder {{${name}}} at position ${match.index}; use ${REFINEMENT_PLACEHOLDERS.map((p) => `{{${p}}}`).join(', ')}`,
      );
    }
  }
  for (const required of ['question', 'critique']) {
    if (!seen.has(required)) problems.push(`the template must contain {{${required}}}`);
  }
  return problems;
}

/** Fills a template in one pass, so text inside a critique that looks like a placeholder stays as it is. */
export function fillTemplate(template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(PLACEHOLDER, (whole, name: string) =>
    Object.hasOwn(values, name) ? values[name] : whole,
  );
}

export interface RefinementPromptInput {
  /** The raw problem text (not the chat-formatted prompt). */
  question: string;
  /** The decoded initial response. */
  previousSolution: string;
  critique: string;
}

/** The refinement request: system message + one user message built from the template. */
export function buildRefinementMessages(
  input: RefinementPromptInput,
  options: { template?: string; systemPrompt?: string } = {},
): ChatMessage[] {
  const template = options.template ?? DEFAULT_REFINEMENT_TEMPLATE;
  const problems = checkRefinementTemplate(template);
  if (problems.length > 0) throw new Error(`refinement template: ${problems.join('; ')}`);
  return [
    { role: 'system', content: options.systemPrompt ?? DEFAULT_SYSTEM_PROMPT },
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
