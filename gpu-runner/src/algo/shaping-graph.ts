// Compiles a shaping expression (plugins/builtin/shaping) into engine ops, so the training graph
// differentiates f(p) like any other op. Subtrees that do not depend on p are folded to numbers
// here; params are job constants and are folded too.
import { evaluateShaping, type ShapingAst } from '@cgrpo/plugins/shaping';
import { add, div, exp, log, maximum, minimum, mul, neg, pow, sqrt, sub, type Tensor } from '../engine';
import type { ShapingSpec } from './config';
import { parseShapingSpec } from './shaping';

type Value = Tensor | number;

function dependsOnP(ast: ShapingAst): boolean {
  switch (ast.type) {
    case 'p':
      return true;
    case 'number':
    case 'param':
      return false;
    case 'neg':
      return dependsOnP(ast.arg);
    case 'binary':
      return dependsOnP(ast.left) || dependsOnP(ast.right);
    case 'call':
      return ast.args.some(dependsOnP);
  }
}

function compile(ast: ShapingAst, p: Tensor, params: Readonly<Record<string, number>>): Value {
  if (!dependsOnP(ast)) return evaluateShaping(ast, 0, params).value;
  switch (ast.type) {
    case 'p':
      return p;
    case 'neg':
      return neg(compile(ast.arg, p, params) as Tensor);
    case 'binary': {
      const a = compile(ast.left, p, params);
      const b = compile(ast.right, p, params);
      const op = { '+': add, '-': sub, '*': mul, '/': div, '^': pow }[ast.op];
      // at least one side is a tensor: constant subtrees were folded above
      return op(a, b);
    }
    case 'call': {
      const [x, lo, hi] = ast.args.map((arg) => compile(arg, p, params));
      switch (ast.fn) {
        case 'exp':
          return exp(x as Tensor);
        case 'log':
          return log(x as Tensor);
        case 'sqrt':
          return sqrt(x as Tensor);
        case 'min':
          return minimum(x, lo);
        case 'max':
          return maximum(x, lo);
        case 'clip':
          // clip(x, lo, hi) = min(max(x, lo), hi), the evaluator's definition
          return minimum(maximum(x, lo), hi);
      }
    }
  }
  throw new Error(`shaping node ${ast.type} cannot depend on p`);
}

/** f(p) as a tensor of p's shape and dtype. A constant expression is broadcast over p. */
export function shapingGraph(ast: ShapingAst, p: Tensor, params: Readonly<Record<string, number>>): Tensor {
  const value = compile(ast, p, params);
  return typeof value === 'number' ? add(mul(p, 0), value) : value;
}

/**
 * Per-token refinement loss −A·f(p) with p = exp(logp), built from a job's shaping spec (checked
 * first). `advantage` broadcasts against `logp` (e.g. [batch, 1] against [batch, seq]).
 */
export function refinementLossGraph(advantage: Tensor, logp: Tensor, spec: ShapingSpec): Tensor {
  const ast = parseShapingSpec(spec);
  return neg(mul(advantage, shapingGraph(ast, exp(logp), spec.params)));
}
