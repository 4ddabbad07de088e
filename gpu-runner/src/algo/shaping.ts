// The shaping function of a job as a CPU function: parsed and checked by the plugin's expression
// module (no code execution), evaluated with forward-mode derivatives. The training graph compiles
// the same AST into engine ops (compileShaping in job/loss-graph.ts).
import { checkShaping, type ShapingAst, shapingWithLogpGradient } from '@cgrpo/plugins/shaping';
import type { ShapingSpec } from './config';
import type { ShapingFunction } from './token-loss';

export class ShapingSpecError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`shaping.${field}: ${message}`);
    this.name = 'ShapingSpecError';
  }
}

/** Parses and checks a shaping spec; throws ShapingSpecError naming the field (and position). */
export function parseShapingSpec(spec: ShapingSpec): ShapingAst {
  const checked = checkShaping(spec.expression, spec.params);
  if (!checked.ok) throw new ShapingSpecError(checked.problem.field, checked.problem.message);
  return checked.ast;
}

export function shapingFunction(spec: ShapingSpec): ShapingFunction {
  const ast = parseShapingSpec(spec);
  const params = { ...spec.params };
  return (p) => shapingWithLogpGradient(ast, p, params);
}
