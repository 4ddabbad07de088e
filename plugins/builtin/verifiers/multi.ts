// builtin:multi — several built-in verifiers combined by a formula over their scores (OpenAI's
// `multi` grader and its `calculate_output`). The formula is parsed by mathjs and evaluated here over
// a whitelist of node types (numbers, grader names, + - * / ^, unary minus, parentheses and
// min max abs floor ceil sqrt exp log): nothing in it is ever executed as code.
import type { VerifierResult } from '@cgrpo/contract';
import { type MathNode, parse } from 'mathjs';
import { z } from 'zod';

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const OPERATORS = new Set(['+', '-', '*', '/', '^']);
const FUNCTIONS: Record<string, (...args: number[]) => number> = {
  min: Math.min,
  max: Math.max,
  abs: Math.abs,
  floor: Math.floor,
  ceil: Math.ceil,
  sqrt: Math.sqrt,
  exp: Math.exp,
  log: Math.log,
};

export type Formula = (scores: Readonly<Record<string, number>>) => number;

/** Compiles `calculate_output` into a function of the graders' scores, or says what is wrong. */
export function compileFormula(
  source: string,
  names: readonly string[],
): { ok: true; formula: Formula } | { ok: false; message: string } {
  let root: MathNode;
  try {
    root = parse(source);
  } catch (error) {
    return { ok: false, message: `cannot parse: ${error instanceof Error ? error.message : String(error)}` };
  }
  const problems: string[] = [];
  const check = (node: MathNode): void => {
    const n = node as MathNode & Record<string, unknown>;
    switch (node.type) {
      case 'ConstantNode':
        if (typeof n.value !== 'number') problems.push(`only numbers are allowed, got ${String(n.value)}`);
        return;
      case 'SymbolNode':
        if (!names.includes(String(n.name)))
          problems.push(`unknown name '${String(n.name)}'; the graders are ${names.join(', ')}`);
        return;
      case 'ParenthesisNode':
        check(n.content as MathNode);
        return;
      case 'OperatorNode': {
        const args = n.args as MathNode[];
        const unary = args.length === 1 && (n.op === '-' || n.op === '+');
        if (!unary && !(args.length === 2 && OPERATORS.has(String(n.op))))
          problems.push(`operator '${String(n.op)}' is not allowed (use + - * / ^)`);
        for (const a of args) check(a);
        return;
      }
      case 'FunctionNode': {
        const fn = (n.fn as MathNode & { name?: string }).name ?? '';
        if (!Object.hasOwn(FUNCTIONS, fn))
          problems.push(`function '${fn}' is not allowed (use ${Object.keys(FUNCTIONS).join(', ')})`);
        for (const a of n.args as MathNode[]) check(a);
        return;
      }
      default:
        problems.push(`${node.type} is not allowed in a formula`);
    }
  };
  check(root);
  if (problems.length > 0) return { ok: false, message: problems.join('; ') };

  const evaluate = (node: MathNode, scores: Readonly<Record<string, number>>): number => {
    const n = node as MathNode & Record<string, unknown>;
    switch (node.type) {
      case 'ConstantNode':
        return n.value as number;
      case 'SymbolNode':
        return scores[String(n.name)] ?? Number.NaN;
      case 'ParenthesisNode':
        return evaluate(n.content as MathNode, scores);
      case 'OperatorNode': {
        const [a, b] = (n.args as MathNode[]).map((x) => evaluate(x, scores));
        if (b === undefined) return n.op === '-' ? -a! : a!;
        switch (n.op) {
          case '+':
            return a! + b;
          case '-':
            return a! - b;
          case '*':
            return a! * b;
          case '/':
            return a! / b;
          default:
            return a! ** b;
        }
      }
      default: {
        const fn = FUNCTIONS[(n.fn as MathNode & { name: string }).name]!;
        return fn(...(n.args as MathNode[]).map((x) => evaluate(x, scores)));
      }
    }
  };
  return { ok: true, formula: (scores) => evaluate(root, scores) };
}

const SubVerifierSchema = z.strictObject({
  /** A built-in verifier other than builtin:multi. */
  plugin: z
    .string()
    .regex(/^builtin:[a-z][a-z0-9-]*$/, "must be a built-in verifier such as 'builtin:exact'"),
  config: z.record(z.string(), z.unknown()).default({}),
});

export const MultiConfigSchema = z
  .strictObject({
    /** Name → verifier; the names are the formula's variables. */
    graders: z
      .record(
        z.string().regex(NAME, 'grader names are letters, digits and _ (not starting with a digit)'),
        SubVerifierSchema,
      )
      .refine((g) => Object.keys(g).length >= 1 && Object.keys(g).length <= 10, 'give 1 to 10 graders'),
    /** e.g. "0.5 * format + 0.5 * similarity"; a grader's value is its raw score (details.raw_score) or its score. */
    calculate_output: z.string().min(1).max(500),
    /** `correct` is output >= pass_threshold; the reward is the output clamped to 0..1. */
    pass_threshold: z.number().default(0.5),
  })
  .superRefine((config, ctx) => {
    for (const [name, use] of Object.entries(config.graders))
      if (use.plugin === 'builtin:multi')
        ctx.addIssue({
          code: 'custom',
          path: ['graders', name, 'plugin'],
          message: 'builtin:multi cannot nest',
        });
    const compiled = compileFormula(config.calculate_output, Object.keys(config.graders));
    if (!compiled.ok) ctx.addIssue({ code: 'custom', path: ['calculate_output'], message: compiled.message });
  });
export type MultiConfig = z.output<typeof MultiConfigSchema>;

/** A grader's value in the formula: the judge's own scale when it has one, else the 0..1 score. */
export const formulaValue = (result: VerifierResult): number =>
  typeof result.details.raw_score === 'number' ? result.details.raw_score : result.score;

export function combine(
  results: Readonly<Record<string, VerifierResult>>,
  formula: Formula,
  config: MultiConfig,
): VerifierResult {
  const values = Object.fromEntries(Object.entries(results).map(([name, r]) => [name, formulaValue(r)]));
  const output = formula(values);
  const score = Number.isFinite(output) ? Math.min(1, Math.max(0, output)) : 0;
  return {
    score,
    correct: Number.isFinite(output) && output >= config.pass_threshold,
    details: {
      output: Number.isFinite(output) ? output : null,
      graders: Object.fromEntries(
        Object.entries(results).map(([name, r]) => [
          name,
          { score: r.score, value: values[name], correct: r.correct },
        ]),
      ),
    },
  };
}
