import { describe, expect, it } from 'vitest';
import { buildPromptMessages, buildRefinementMessages, DEFAULT_SYSTEM_PROMPT, fillTemplate } from './prompt';

describe('prompts', () => {
  it('wraps a problem with the system message and the \\boxed{} instruction (§1.1)', () => {
    const [system, user] = buildPromptMessages('What is 2+2?');
    expect(system).toEqual({ role: 'system', content: 'You are a helpful assistant.' });
    expect(user.role).toBe('user');
    expect(user.content.startsWith('What is 2+2?\n\n')).toBe(true);
    expect(user.content).toContain('step by step');
    expect(user.content).toContain('\\boxed{}');
    expect(buildPromptMessages('Q', { template: 'Solve: {question}', systemPrompt: '' })).toEqual([
      { role: 'user', content: 'Solve: Q' },
    ]);
    expect(() => buildPromptMessages('Q', { template: 'no placeholder' })).toThrow(
      /prompt_template: must contain/,
    );
  });

  it('builds the refinement prompt with the three labelled fields in order (§1.4)', () => {
    const [system, user] = buildRefinementMessages({
      question: 'Compute 3*4.',
      previousSolution: '3*4 = 7, so \\boxed{7}',
      critique: 'The generated solution is incorrect.',
    });
    expect(system.content).toBe(DEFAULT_SYSTEM_PROMPT);
    const q = user.content.indexOf('Question:\nCompute 3*4.');
    const prev = user.content.indexOf('Previous Solution:\n3*4 = 7, so \\boxed{7}');
    const crit = user.content.indexOf('Critique:\nThe generated solution is incorrect.');
    expect(q).toBeGreaterThanOrEqual(0);
    expect(prev).toBeGreaterThan(q);
    expect(crit).toBeGreaterThan(prev);
    expect(user.content).toContain('\\boxed{}');
    expect(user.content).not.toMatch(/\{(question|previous_solution|critique)\}/);
  });

  it('substitutes in one pass and leaves LaTeX braces alone', () => {
    expect(
      fillTemplate('{question} \\frac{a}{b} {critique}', { question: 'see {critique}', critique: 'C' }),
    ).toBe('see {critique} \\frac{a}{b} C');
  });

  it('rejects refinement templates without all three placeholders', () => {
    expect(() =>
      buildRefinementMessages(
        { question: 'q', previousSolution: 'p', critique: 'c' },
        { template: '{question}' },
      ),
    ).toThrow(
      /must contain the placeholder \{previous_solution\}; must contain the placeholder \{critique\}/,
    );
  });
});
