// The demo's before → after verdict: McNemar over the same held-out problems, and the Wilson interval.
import { describe, expect, it } from 'vitest';
import { verdict, wilson } from '../../scripts/demo.mjs';

const rows = (correct: boolean[]) => correct.map((c, row) => ({ row, correct: c }));

describe('demo verdict', () => {
  it('calls a change within chance "no significant change"', () => {
    // 3 gained, 1 lost: z = 2 / 2 = 1.00
    const before = rows([false, false, false, true, true, false]);
    const after = rows([true, true, true, false, true, false]);
    const v = verdict(before, after);
    expect(v).toContain('newly solved 3, newly failed 1 (McNemar z = 1.00)');
    expect(v).toContain('no significant change');
  });

  it('calls 9 gained and 0 lost a significant gain, and the reverse a loss', () => {
    const before = rows([...Array(9).fill(false), true]);
    const after = rows(Array(10).fill(true));
    expect(verdict(before, after)).toContain('z = 3.00): a significant gain');
    expect(verdict(after, before)).toContain('z = -3.00): a significant loss');
  });

  it('pairs problems by row, not by position', () => {
    const before = rows([true, false]);
    const after = [
      { row: 1, correct: false },
      { row: 0, correct: true },
    ];
    expect(verdict(before, after)).toContain('newly solved 0, newly failed 0');
  });

  it('wilson: the 95% interval of 60/320 holds 0.1875 and is about ±4.3 points wide', () => {
    const [lo, hi] = wilson(60, 320);
    expect(lo).toBeCloseTo(0.1487, 3);
    expect(hi).toBeCloseTo(0.2338, 3);
  });
});
