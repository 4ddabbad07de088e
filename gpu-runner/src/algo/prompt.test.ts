import { describe, expect, it } from 'vitest';
import {
  buildPromptMessages,
  buildRefinementMessages,
  checkRefinementTemplate,
  DEFAULT_REFINEMENT_TEMPLATE,
  DEFAULT_SYSTEM_PROMPT,
} from './prompt';

describe('prompts', () => {
  it('wraps a problem with the system message and the \\boxed{} instruction', () => {
    const [system, user] = buildPromptMessages('What is 2+2?');
    expect(system).toEqual({ role: 'system', content: 'You are a helpful assistant.' });
    expect(user.role).toBe('user');
    expect(user.content.startsWith('What is 2+2?\n\n')).toBe(true);
    expect(user.content).toContain('step by step');
    expect(user.content).toContain('\\boxed{}');
    expect(buildPromptMessages('Q', { instruction: '', systemPrompt: 'S' })).toEqual([
      { role: 'system', content: 'S' },
      { role: 'user', content: 'Q' },
    ]);
  });

  it('builds the refinement prompt with the three labelled fields in order', () => {
    const [system, user] = buildRefinementMessages({
      question: 'Compute 3*4.',
      previousSolution: '3*4 = 7, so \\boxed{7}',
      critique: 'The generated solution is incorrect.',
    });
    expect(system.content).toBe(DEFAULT_SYSTEM_PROMPT);
    const q = user.content.indexOf('**Question:**\nCompute 3*4.');
    const prev = user.content.indexOf('**Previous Solution:**\n3*4 = 7, so \\boxed{7}');
    const crit = user.content.indexOf('**Critique:**\nThe generated solution is incorrect.');
    expect(q).toBeGreaterThanOrEqual(0);
    expect(prev).toBeGreaterThan(q);
    expect(crit).toBeGreaterThan(prev);
    expect(user.content).toContain('\\boxed{}');
    expect(user.content).not.toMatch(/\{\{/);
  });

  it('substitutes in one pass: placeholders inside the critique are left as text', () => {
    const [, user] = buildRefinementMessages(
      { question: 'Q', previousSolution: 'P', critique: 'see {{question}}' },
      { template: 'Q={{question}} C={{ critique }}' },
    );
    expect(user.content).toBe('Q=Q C=see {{question}}');
  });

  it('rejects templates with unknown or missing placeholders', () => {
    expect(checkRefinementTemplate(DEFAULT_REFINEMENT_TEMPLATE)).toEqual([]);
    const problems = checkRefinementTemplate('{{question}} {{answer}}');
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/unknown placeholder \{\{answer\}\} at position 13/);
    expect(problems[1]).toMatch(/must contain \{\{critique\}\}/);
    expect(() =>
      buildRefinementMessages(
        { question: 'q', previousSolution: 'p', critique: 'c' },
        { template: 'nothing' },
      ),
    ).toThrow(/refinement template/);
  });
});
