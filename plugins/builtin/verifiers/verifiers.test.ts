import { describe, expect, it } from 'vitest';
import { getBuiltinVerifier } from '../index';

const input = (response: string, reference: string) => ({ question: '', response, reference, metadata: {} });
const verify = (name: string, response: string, reference: string, config: Record<string, unknown> = {}) =>
  getBuiltinVerifier(name, config).verify(input(response, reference));

describe('builtin:exact', () => {
  it.each([
    ['The capital is \\boxed{Paris}.', 'Paris', true],
    ['The capital is \\boxed{paris}.', 'Paris', true],
    ['So the final answer is: **Paris**.', 'Paris', true],
    ['Answer: "Paris"', 'Paris', true],
    ['I think\nParis', 'Paris', true],
    ['\\boxed{Lyon} ... wait, \\boxed{Paris}', 'Paris', true],
    ['\\boxed{\\text{Paris}}', 'Paris', true],
    ['\\boxed{Paris, France}', 'Paris', false],
    ['The answer is Lyon.', 'Paris', false],
    ['\\boxed{ New   York }', 'new york', true],
  ])('%j vs %j → %s', async (response, reference, correct) => {
    const result = await verify('builtin:exact', response, reference);
    expect(result.correct).toBe(correct);
    expect(result.score).toBe(correct ? 1 : 0);
  });

  it('honours case_sensitive, extract and alternatives_separator', async () => {
    expect((await verify('exact', '\\boxed{paris}', 'Paris', { case_sensitive: true })).correct).toBe(false);
    expect((await verify('exact', 'Paris\n\\boxed{Lyon}', 'Paris', { extract: 'whole' })).correct).toBe(
      false,
    );
    expect(
      (await verify('exact', '\\boxed{NYC}', 'New York|NYC', { alternatives_separator: '|' })).correct,
    ).toBe(true);
    const none = await verify('exact', 'no box here', 'x', { extract: 'boxed' });
    expect(none).toEqual({
      score: 0,
      correct: false,
      details: { extracted: null, reason: 'no boxed answer found' },
    });
  });
});

describe('builtin:regex', () => {
  it('extracts the answer group of the last match and compares it', async () => {
    const config = { pattern: 'ANSWER:\\s*(?<answer>\\S+)' };
    expect((await verify('regex', 'ANSWER: 3\nno, ANSWER: 42', '42', config)).correct).toBe(true);
    expect((await verify('regex', 'ANSWER: 41', '42', config)).details).toEqual({ extracted: '41' });
    expect((await verify('regex', 'nothing', '42', config)).details).toMatchObject({
      reason: 'the pattern did not match',
    });
    expect((await verify('regex', 'result=(7)', '7', { pattern: 'result=\\((\\d+)\\)' })).correct).toBe(true);
  });

  it('match mode with an escaped {reference}', async () => {
    const config = { pattern: '\\bx = {reference}\\b', mode: 'match' };
    expect((await verify('regex', 'so x = 1.5 exactly', '1.5', config)).correct).toBe(true);
    // the reference is escaped: '.' does not match any character
    expect((await verify('regex', 'so x = 1x5 exactly', '1.5', config)).correct).toBe(false);
  });

  it('rejects invalid patterns and flags naming the field', () => {
    expect(() => getBuiltinVerifier('regex', { pattern: '(' })).toThrow(
      /config\.pattern: not a valid regular expression/,
    );
    expect(() => getBuiltinVerifier('regex', { pattern: 'a', flags: 'gx' })).toThrow(/config\.flags/);
    expect(() => getBuiltinVerifier('regex', {})).toThrow(/config\.pattern/);
  });
});

describe('builtin:choice', () => {
  it.each([
    ['The answer is (B).', 'B', true],
    ['Therefore, the answer is B', '(B)', true],
    ['\\boxed{C}', 'C', true],
    ['\\boxed{\\text{(D)}}', 'D', true],
    ['Option A looks tempting, but the answer is C.', 'C', true],
    ['Answer: **c**', 'C', true],
    ['After checking each option:\n(A)', 'A', true],
    ['I eliminated A and B.\nThe answer is D', 'B', false],
    ['I am not sure.', 'A', false],
    ['\\boxed{B}', 'B) 12 apples', true],
  ])('%j vs %j → %s', async (response, reference, correct) => {
    expect((await verify('choice', response, reference)).correct).toBe(correct);
  });

  it('reports a reference that is not a letter, and respects the letter set', async () => {
    expect((await verify('choice', '\\boxed{A}', '42')).details).toMatchObject({
      reason: expect.stringContaining('not one of the letters'),
    });
    expect((await verify('choice', '\\boxed{E}', 'E', { letters: 'ABCD' })).correct).toBe(false);
    expect(() => getBuiltinVerifier('choice', { letters: 'A' })).toThrow(/config\.letters/);
  });
});

describe('builtin:math (wired to verifyMath)', () => {
  it('scores equivalent answers as correct', async () => {
    expect((await verify('builtin:math', 'Thus \\boxed{\\frac{1}{2}}', '0.5')).correct).toBe(true);
    expect((await verify('builtin:math', 'Thus \\boxed{3}', '4')).correct).toBe(false);
  });

  it('rejects bad config naming the field', () => {
    expect(() => getBuiltinVerifier('builtin:math', { cas: 'maple' })).toThrow(/config\.cas/);
    expect(() => getBuiltinVerifier('builtin:math', { floatRounding: 4 })).toThrow(/config\.floatRounding/);
  });
});
