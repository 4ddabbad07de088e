// Exact (rational) and floating-point evaluation of answer nodes. Exact evaluation is bounded:
// it returns null rather than build a huge number, so 9^{9^{9^9}} costs microseconds.

import { type Node, type Rational, rat, ratAdd, ratDiv, ratMul, ratPow, ratToNumber } from './ast';

/** Value of a node made only of numbers, + - * /, integer powers and percent; else null. */
export function exactValue(node: Node): Rational | null {
  switch (node.k) {
    case 'num':
      return node.value;
    case 'neg': {
      const v = exactValue(node.arg);
      return v && { n: -v.n, d: v.d };
    }
    case 'pct': {
      const v = exactValue(node.arg);
      return v && ratDiv(v, { n: 100n, d: 1n });
    }
    case 'add': {
      let acc: Rational | null = { n: 0n, d: 1n };
      for (const t of node.terms) {
        const v = exactValue(t);
        if (v === null || acc === null) return null;
        acc = ratAdd(acc, v);
      }
      return acc;
    }
    case 'mul': {
      let acc: Rational | null = { n: 1n, d: 1n };
      for (const f of node.factors) {
        const v = exactValue(f);
        if (v === null || acc === null) return null;
        acc = ratMul(acc, v);
      }
      return acc;
    }
    case 'div': {
      const a = exactValue(node.num);
      const b = exactValue(node.den);
      return a && b && ratDiv(a, b);
    }
    case 'pow': {
      const a = exactValue(node.base);
      const e = exactValue(node.exp);
      return a && e && ratPow(a, e);
    }
    case 'fn':
      if (node.name === 'factorial' && node.args.length === 1) {
        const v = exactValue(node.args[0]!);
        if (v === null || v.d !== 1n || v.n < 0n || v.n > 300n) return null;
        let acc = 1n;
        for (let i = 2n; i <= v.n; i++) acc *= i;
        return rat(acc);
      }
      return null;
    default:
      return null;
  }
}

const FACT_LIMIT = 170;

function gamma(x: number): number {
  if (Number.isInteger(x) && x > 0 && x <= FACT_LIMIT + 1) {
    let acc = 1;
    for (let i = 2; i < x; i++) acc *= i;
    return acc;
  }
  // Lanczos approximation
  if (x < 0.5) return Math.PI / (Math.sin(Math.PI * x) * gamma(1 - x));
  const g = 7;
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  const y = x - 1;
  let a = c[0]!;
  const t = y + g + 0.5;
  for (let i = 1; i < g + 2; i++) a += c[i]! / (y + i);
  return Math.sqrt(2 * Math.PI) * t ** (y + 0.5) * Math.exp(-t) * a;
}

/** Real-valued evaluation; NaN where undefined or unsupported (complex, text, sets). */
export function evalFloat(node: Node, env: ReadonlyMap<string, number>): number {
  switch (node.k) {
    case 'num':
      return ratToNumber(node.value);
    case 'sym':
      return env.get(node.name) ?? Number.NaN;
    case 'const':
      return node.name === 'pi'
        ? Math.PI
        : node.name === 'e'
          ? Math.E
          : node.name === 'inf'
            ? Number.POSITIVE_INFINITY
            : Number.NaN;
    case 'add':
      return node.terms.reduce((s, t) => s + evalFloat(t, env), 0);
    case 'mul':
      return node.factors.reduce((s, f) => s * evalFloat(f, env), 1);
    case 'neg':
      return -evalFloat(node.arg, env);
    case 'div':
      return evalFloat(node.num, env) / evalFloat(node.den, env);
    case 'pow':
      return evalFloat(node.base, env) ** evalFloat(node.exp, env);
    case 'pct':
      return evalFloat(node.arg, env) / 100;
    case 'fn': {
      const a = node.args.map((x) => evalFloat(x, env));
      const x = a[0] ?? Number.NaN;
      switch (node.name) {
        case 'sqrt':
          return Math.sqrt(x);
        case 'root':
          return x < 0 && (a[1] ?? 0) % 2 === 1
            ? -(Math.abs(x) ** (1 / a[1]!))
            : x ** (1 / (a[1] ?? Number.NaN));
        case 'sin':
          return Math.sin(x);
        case 'cos':
          return Math.cos(x);
        case 'tan':
          return Math.tan(x);
        case 'sec':
          return 1 / Math.cos(x);
        case 'csc':
          return 1 / Math.sin(x);
        case 'cot':
          return 1 / Math.tan(x);
        case 'arcsin':
          return Math.asin(x);
        case 'arccos':
          return Math.acos(x);
        case 'arctan':
          return Math.atan(x);
        case 'sinh':
          return Math.sinh(x);
        case 'cosh':
          return Math.cosh(x);
        case 'tanh':
          return Math.tanh(x);
        case 'ln':
        case 'log':
          return Math.log(x);
        case 'logb':
          return Math.log(x) / Math.log(a[1] ?? Number.NaN);
        case 'exp':
          return Math.exp(x);
        case 'abs':
          return Math.abs(x);
        case 'factorial':
          return x > FACT_LIMIT ? Number.POSITIVE_INFINITY : gamma(x + 1);
        case 'binom': {
          const k = a[1] ?? Number.NaN;
          return gamma(x + 1) / (gamma(k + 1) * gamma(x - k + 1));
        }
        case 'max':
          return Math.max(...a);
        case 'min':
          return Math.min(...a);
        default:
          return Number.NaN;
      }
    }
    default:
      return Number.NaN;
  }
}

/** Rounds like sympy's Float.round(n): to n decimal places, compared as strings. */
export function roundedKey(x: number, places: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Math.abs(x) >= 1e21) return x.toPrecision(15);
  const s = x.toFixed(places);
  return /^-0\.?0*$/.test(s) ? s.slice(1) : s;
}
