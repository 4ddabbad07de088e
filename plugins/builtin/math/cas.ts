// Symbolic equivalence through a CAS from npm: mathjs, chosen by measured accuracy and speed on
// cases.jsonl (see docs/math-verifier.md). The Compute Engine adapter it was measured against lives
// in cas-compute-engine.ts, imported only by the math tests and bench/verifier.ts: its 20 MB
// distribution must stay out of the Worker bundle and the runner's import graph.
// Only expression-valued nodes (no sets/relations/text) reach these functions, and only after
// the caller has bounded their size and exponents.

import { all, create, type MathJsInstance } from 'mathjs';
import type { Node } from './ast';

export type CasName = 'mathjs' | 'compute-engine';

export interface Cas {
  readonly name: CasName;
  /** true: equivalent; false: shown different; undefined: the CAS could not decide. */
  equivalent(a: Node, b: Node, variables: string[]): boolean | undefined;
}

// ---- mathjs: random-point identity test with the CAS's evaluator, simplify as a fallback --------

let mathjs: MathJsInstance | null = null;

const MATHJS_FN: Record<string, string> = {
  sqrt: 'sqrt',
  sin: 'sin',
  cos: 'cos',
  tan: 'tan',
  sec: 'sec',
  csc: 'csc',
  cot: 'cot',
  arcsin: 'asin',
  arccos: 'acos',
  arctan: 'atan',
  sinh: 'sinh',
  cosh: 'cosh',
  tanh: 'tanh',
  ln: 'log',
  log: 'log',
  exp: 'exp',
  abs: 'abs',
  max: 'max',
  min: 'min',
  gcd: 'gcd',
  lcm: 'lcm',
  det: 'det',
};

export function toMathjs(n: Node): string {
  switch (n.k) {
    case 'num':
      return n.value.d === 1n ? `${n.value.n}` : `(${n.value.n}/${n.value.d})`;
    case 'sym':
      return `v_${n.name.replace(/[^a-zA-Z0-9]/g, '_')}`;
    case 'const':
      return n.name === 'inf' ? 'Infinity' : n.name;
    case 'add':
      return `(${n.terms.map(toMathjs).join(' + ')})`;
    case 'mul':
      return `(${n.factors.map(toMathjs).join(' * ')})`;
    case 'neg':
      return `(-${toMathjs(n.arg)})`;
    case 'div':
      return `(${toMathjs(n.num)} / ${toMathjs(n.den)})`;
    case 'pow':
      return `(${toMathjs(n.base)} ^ ${toMathjs(n.exp)})`;
    case 'pct':
      return `(${toMathjs(n.arg)} / 100)`;
    case 'fn': {
      if (n.name === 'root') return `(${toMathjs(n.args[0]!)} ^ (1 / ${toMathjs(n.args[1]!)}))`; // principal root, as sympy
      if (n.name === 'logb') return `log(${toMathjs(n.args[0]!)}, ${toMathjs(n.args[1]!)})`;
      if (n.name === 'binom') {
        // gamma form so a symbolic n can be sampled at non-integer points
        const [a, b] = [toMathjs(n.args[0]!), toMathjs(n.args[1]!)];
        return `(gamma(${a} + 1) / (gamma(${b} + 1) * gamma(${a} - ${b} + 1)))`;
      }
      if (n.name === 'factorial') return `gamma(${toMathjs(n.args[0]!)} + 1)`;
      const f = MATHJS_FN[n.name];
      if (!f) throw new Error(`no mathjs function for ${n.name}`);
      return `${f}(${n.args.map(toMathjs).join(', ')})`;
    }
    default:
      throw new Error(`not an expression: ${n.k}`);
  }
}

interface Complexish {
  re: number;
  im: number;
}

function asComplex(v: unknown): Complexish | null {
  if (typeof v === 'number') return { re: v, im: 0 };
  if (v !== null && typeof v === 'object' && 're' in v && 'im' in v) {
    const c = v as Complexish;
    return { re: c.re, im: c.im };
  }
  return null;
}

function close(a: Complexish, b: Complexish): boolean {
  const scale = Math.max(1, Math.abs(a.re), Math.abs(a.im), Math.abs(b.re), Math.abs(b.im));
  return Math.abs(a.re - b.re) <= 1e-9 * scale && Math.abs(a.im - b.im) <= 1e-9 * scale;
}

// Fixed points (deterministic verdicts); irrational-ish values avoid accidental coincidences.
const SAMPLE_POINTS = [0.6173, 1.4231, 2.7315, 0.3127, 1.7763, 3.1791];

export const mathjsCas: Cas = {
  name: 'mathjs',
  equivalent(a, b, variables) {
    mathjs ??= create(all, {});
    const m = mathjs;
    const ea = m.compile(toMathjs(a));
    const eb = m.compile(toMathjs(b));
    let agreed = 0;
    for (let p = 0; p < SAMPLE_POINTS.length; p++) {
      const scope: Record<string, number> = {};
      variables.forEach((v, j) => {
        // alternate signs so sqrt(x^2) and x (or |x| and x) are told apart
        scope[`v_${v.replace(/[^a-zA-Z0-9]/g, '_')}`] =
          SAMPLE_POINTS[(p + j * 2) % SAMPLE_POINTS.length]! * (((p >> j) & 1) === 0 ? 1 : -1);
      });
      let va: Complexish | null;
      let vb: Complexish | null;
      try {
        va = asComplex(ea.evaluate(scope));
        vb = asComplex(eb.evaluate(scope));
      } catch {
        continue;
      }
      if (va === null || vb === null) continue;
      const finite = [va.re, va.im, vb.re, vb.im].every(Number.isFinite);
      if (!finite) {
        if (va.re === vb.re && va.im === vb.im) continue; // both ±Infinity: no information
        if ([va.re, va.im, vb.re, vb.im].some(Number.isNaN)) continue;
        return false;
      }
      if (!close(va, vb)) return false;
      agreed++;
      if (variables.length === 0) return true;
    }
    if (agreed >= 3) return true;
    try {
      const d = m.simplify(`${toMathjs(a)} - (${toMathjs(b)})`);
      return d.toString() === '0' ? true : undefined;
    } catch {
      return undefined;
    }
  },
};
