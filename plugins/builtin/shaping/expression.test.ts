import { describe, expect, it } from 'vitest';
import {
  checkShaping,
  evaluateShaping,
  formatShaping,
  parseShapingExpression,
  type ShapingAst,
  shapingWithLogpGradient,
} from './expression';

function parse(src: string, params: string[] = ['gamma']): ShapingAst {
  const result = parseShapingExpression(src, params);
  if (!result.ok) throw new Error(`${src}: ${result.message} at ${result.position}`);
  return result.ast;
}

function f(src: string, p: number, params: Record<string, number> = { gamma: 0.1 }): number {
  return evaluateShaping(parse(src, Object.keys(params)), p, params).value;
}

describe('parseShapingExpression', () => {
  it('parses the default expression', () => {
    expect(formatShaping(parse('p / (p + gamma)'))).toBe('(p / (p + gamma))');
  });

  it('follows precedence and associativity', () => {
    expect(formatShaping(parse('1 + 2 * 3 - 4 / 2'))).toBe('((1 + (2 * 3)) - (4 / 2))');
    expect(formatShaping(parse('2 ^ 3 ^ 2'))).toBe('(2 ^ (3 ^ 2))');
    expect(formatShaping(parse('-p ^ 2'))).toBe('(-(p ^ 2))');
    expect(formatShaping(parse('2 ^ -1'))).toBe('(2 ^ (-1))');
    expect(formatShaping(parse('p ** 2'))).toBe('(p ^ 2)');
    expect(formatShaping(parse('p × 2 ÷ 4 − 1'))).toBe('(((p * 2) / 4) - 1)');
    expect(f('2 ^ 3 ^ 2', 0)).toBe(512);
    expect(f('1 - 2 - 3', 0)).toBe(-4);
    expect(f('8 / 2 / 2', 0)).toBe(2);
    expect(f('-2 ^ 2', 0)).toBe(-4);
    expect(f('+p', 0.3)).toBe(0.3);
  });

  it('accepts numbers in all common forms and the constants pi, e', () => {
    expect(f('1.5 + .5 + 2. + 1e-1 + 2E+1', 0)).toBeCloseTo(24.1, 12);
    expect(f('pi', 0)).toBe(Math.PI);
    expect(f('e', 0)).toBe(Math.E);
  });

  it('evaluates every function', () => {
    expect(f('exp(1)', 0)).toBeCloseTo(Math.E, 12);
    expect(f('log(e)', 0)).toBeCloseTo(1, 12);
    expect(f('sqrt(p)', 0.25)).toBe(0.5);
    expect(f('min(p, 0.5)', 0.7)).toBe(0.5);
    expect(f('max(p, 0.5)', 0.7)).toBe(0.7);
    expect(f('clip(p, 0.2, 0.8)', 0.1)).toBe(0.2);
    expect(f('clip(p, 0.2, 0.8)', 0.9)).toBe(0.8);
    expect(f('clip(p, 0.2, 0.8)', 0.5)).toBe(0.5);
  });

  it.each([
    ['p +', 3, 'end of expression'],
    ['p + * 2', 4, "unexpected '*'"],
    ['(p + 1', 6, "expected ')'"],
    ['p + 1)', 5, "unexpected ')'"],
    ['p / (p + delta)', 9, "unknown identifier 'delta'"],
    ['foo(p)', 0, "unknown function 'foo'"],
    ['min(p)', 0, "'min' takes 2 arguments, got 1"],
    ['clip(p, 1)', 0, "'clip' takes 3 arguments"],
    ['exp(p, 1)', 0, "'exp' takes 1 argument, got 2"],
    ['p $ 2', 2, "unexpected character '$'"],
    ['', 0, 'empty'],
    ['   ', 0, 'empty'],
    ['p p', 2, "unexpected 'p'"],
    ['1.5.3', 3, "unexpected '.3'"],
    ['exp', 3, "expected '('"],
    ['p;process.exit()', 1, "unexpected character ';'"],
  ])('rejects %j at position %i', (src, position, message) => {
    const result = parseShapingExpression(src, ['gamma']);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.position).toBe(position);
    expect(result.message).toContain(message);
  });

  it('rejects invalid param names and over-long or over-deep sources', () => {
    const bad = parseShapingExpression('p', ['exp']);
    expect(bad.ok).toBe(false);
    expect(parseShapingExpression('p', ['p']).ok).toBe(false);
    expect(parseShapingExpression('p', ['1x']).ok).toBe(false);
    expect(parseShapingExpression(`${'p+'.repeat(260)}p`, []).ok).toBe(false);
    const deep = parseShapingExpression(`${'('.repeat(100)}p${')'.repeat(100)}`, []);
    expect(deep.ok).toBe(false);
    if (!deep.ok) expect(deep.message).toContain('deeper');
  });

  it('has no prototype-pollution or code path: identifiers like constructor are unknown', () => {
    for (const src of ['constructor', 'toString(p)', '__proto__', 'hasOwnProperty']) {
      expect(parseShapingExpression(src, []).ok).toBe(false);
    }
  });
});

describe('evaluateShaping derivatives', () => {
  const cases = [
    'p / (p + gamma)',
    'p ^ 2 * exp(-p)',
    'log(p + gamma) - sqrt(p)',
    '2 ^ p',
    'p ^ p',
    '-(p - gamma) / (1 + p * p)',
    'min(p, 0.5) + max(p, 0.3) * clip(p * 2, 0.1, 0.9)',
  ];
  it.each(cases)('df/dp of %s matches a central difference', (src) => {
    const ast = parse(src);
    for (const p of [0.07, 0.13, 0.37, 0.61, 0.83]) {
      const h = 1e-6;
      const numeric =
        (evaluateShaping(ast, p + h, { gamma: 0.1 }).value -
          evaluateShaping(ast, p - h, { gamma: 0.1 }).value) /
        (2 * h);
      expect(evaluateShaping(ast, p, { gamma: 0.1 }).dp).toBeCloseTo(numeric, 5);
    }
  });

  // TV2 of docs/critique-grpo.md §7: f(p) and Ψ(p) = ∂f/∂logp for γ = 0.1.
  it.each([
    [0.01, 0.090909, 0.082645],
    [0.05, 0.333333, 0.222222],
    [0.1, 0.5, 0.25],
    [0.5, 0.833333, 0.138889],
    [0.9, 0.9, 0.09],
    [1.0, 0.909091, 0.082645],
  ])('TV2: p=%f → f=%f, Ψ=%f', (p, fExpected, psiExpected) => {
    const { f: value, dfDLogp } = shapingWithLogpGradient(parse('p / (p + gamma)'), p, { gamma: 0.1 });
    expect(value).toBeCloseTo(fExpected, 6);
    expect(dfDLogp).toBeCloseTo(psiExpected, 6);
  });
});

describe('checkShaping', () => {
  it('accepts the default', () => {
    expect(checkShaping('p / (p + gamma)', { gamma: 0.1 }).ok).toBe(true);
  });

  it('names the field and position of a syntax error', () => {
    const result = checkShaping('p / (p + gama)', { gamma: 0.1 });
    expect(result).toMatchObject({ ok: false, problem: { field: 'expression', position: 9 } });
  });

  it('rejects expressions that are not finite on (0, 1]', () => {
    const result = checkShaping('log(p - 0.5)', {});
    expect(result).toMatchObject({ ok: false, problem: { field: 'expression' } });
    if (!result.ok) expect(result.problem.message).toContain('not finite at p = 1e-8');
    expect(checkShaping('1 / (p - 1)', {}).ok).toBe(false);
  });

  it('rejects bad params', () => {
    expect(checkShaping('p', { exp: 1 })).toMatchObject({ ok: false, problem: { field: 'params.exp' } });
    expect(checkShaping('p', { g: Number.NaN })).toMatchObject({ ok: false, problem: { field: 'params.g' } });
  });
});
