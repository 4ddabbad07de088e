// The Compute Engine CAS adapter, kept only so the measured comparison with mathjs stays runnable
// (plugins/builtin/math/math.test.ts, bench/verifier.ts). Nothing in the product imports this file:
// @cortex-js/compute-engine is a devDependency, its ~7 MB integration-rules module broke the
// vitest workerd pool (WebSocket 1009 "Message is too large") and would bloat the Worker bundle.

import { ComputeEngine } from '@cortex-js/compute-engine';
import type { MathJsonExpression } from '@cortex-js/compute-engine/math-json';
import type { Node } from './ast';
import type { Cas } from './cas';

// ---- Compute Engine: boxed MathJSON, isIdenticallyEqual (sampling + expand/simplify proof) ------

let engine: ComputeEngine | null = null;

type Json = MathJsonExpression;

const CE_FN: Record<string, string> = {
  sqrt: 'Sqrt',
  sin: 'Sin',
  cos: 'Cos',
  tan: 'Tan',
  sec: 'Sec',
  csc: 'Csc',
  cot: 'Cot',
  arcsin: 'Arcsin',
  arccos: 'Arccos',
  arctan: 'Arctan',
  sinh: 'Sinh',
  cosh: 'Cosh',
  tanh: 'Tanh',
  ln: 'Ln',
  log: 'Ln',
  exp: 'Exp',
  abs: 'Abs',
  factorial: 'Factorial',
  binom: 'Binomial',
  max: 'Max',
  min: 'Min',
  gcd: 'GCD',
  lcm: 'LCM',
  det: 'Determinant',
};

function bigJson(b: bigint): Json {
  return b <= BigInt(Number.MAX_SAFE_INTEGER) && b >= -BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(b)
    : { num: b.toString() };
}

export function toMathJson(n: Node): Json {
  switch (n.k) {
    case 'num':
      return n.value.d === 1n ? bigJson(n.value.n) : ['Rational', bigJson(n.value.n), bigJson(n.value.d)];
    case 'sym':
      return `v_${n.name.replace(/[^a-zA-Z0-9]/g, '_')}`;
    case 'const':
      return { pi: 'Pi', e: 'ExponentialE', i: 'ImaginaryUnit', inf: 'PositiveInfinity' }[n.name];
    case 'add':
      return ['Add', ...n.terms.map(toMathJson)];
    case 'mul':
      return ['Multiply', ...n.factors.map(toMathJson)];
    case 'neg':
      return ['Negate', toMathJson(n.arg)];
    case 'div':
      return ['Divide', toMathJson(n.num), toMathJson(n.den)];
    case 'pow':
      return ['Power', toMathJson(n.base), toMathJson(n.exp)];
    case 'pct':
      return ['Divide', toMathJson(n.arg), 100];
    case 'fn': {
      if (n.name === 'root') return ['Root', toMathJson(n.args[0]!), toMathJson(n.args[1]!)];
      if (n.name === 'logb') return ['Log', toMathJson(n.args[0]!), toMathJson(n.args[1]!)];
      const f = CE_FN[n.name];
      if (!f) throw new Error(`no Compute Engine function for ${n.name}`);
      return [f, ...n.args.map(toMathJson)];
    }
    default:
      throw new Error(`not an expression: ${n.k}`);
  }
}

export const computeEngineCas: Cas = {
  name: 'compute-engine',
  equivalent(a, b) {
    engine ??= new ComputeEngine();
    const ce = engine;
    const ba = ce.box(toMathJson(a));
    const bb = ce.box(toMathJson(b));
    const same = ba.isIdenticallyEqual(bb);
    if (same !== undefined) return same;
    const d = ce.box(['Subtract', toMathJson(a), toMathJson(b)]).simplify();
    return d.is(0) ? true : undefined;
  },
};
