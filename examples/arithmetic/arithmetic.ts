// The shipped arithmetic task: seeded multi-step problems (2- and 3-digit addition and
// subtraction, 2-digit × 1-digit multiplication, expressions of two operations), their worked solutions, and wrong
// solutions with critiques for the feedback-following corpus. Pure functions of a seed, so
// `generate.ts` writes the same bytes on every machine.

/** A small deterministic generator (mulberry32): the same seed gives the same problems anywhere. */
export class TaskRng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
}

export type Op = '+' | '-' | '*';

export interface Problem {
  /** The expression as written, e.g. `47 + 58 * 3`. */
  expression: string;
  /** The question text shown to the model. */
  question: string;
  answer: number;
  /** One line per operation, in evaluation order: `58 * 3 = 174`. */
  steps: Step[];
}

export interface Step {
  a: number;
  op: Op;
  b: number;
  result: number;
}

const PHRASINGS = ['Compute {e}.', 'What is {e}?', 'Evaluate {e}.', 'Calculate {e}.'];

/** The problem shapes, with numbers drawn per shape; every intermediate result stays >= 0. */
const SHAPES: ((r: TaskRng) => { terms: number[]; ops: Op[] })[] = [
  (r) => ({ terms: [r.int(10, 99), r.int(10, 99)], ops: ['+'] }),
  (r) => {
    const a = r.int(20, 99);
    return { terms: [a, r.int(10, a)], ops: ['-'] };
  },
  (r) => {
    const a = r.int(10, 99);
    const b = r.int(10, 99);
    return { terms: [a, b, r.int(10, Math.min(99, a + b))], ops: ['+', '-'] };
  },
  (r) => ({ terms: [r.int(10, 99), r.int(2, 9)], ops: ['*'] }),
  (r) => ({ terms: [r.int(10, 99), r.int(2, 9), r.int(10, 99)], ops: ['*', '+'] }),
  (r) => ({ terms: [r.int(10, 99), r.int(10, 99), r.int(2, 9)], ops: ['+', '*'] }),
  (r) => ({ terms: [r.int(100, 999), r.int(100, 999)], ops: ['+'] }),
  (r) => {
    const a = r.int(200, 999);
    return { terms: [a, r.int(100, a)], ops: ['-'] };
  },
];

function apply(a: number, op: Op, b: number): number {
  return op === '+' ? a + b : op === '-' ? a - b : a * b;
}

/** Evaluation order: multiplications first, then left to right (the order a person writes it out). */
export function solveSteps(terms: readonly number[], ops: readonly Op[]): Step[] {
  const ts = [...terms];
  const os = [...ops];
  const steps: Step[] = [];
  for (const pass of [['*'], ['+', '-']] as Op[][]) {
    for (let i = 0; i < os.length; ) {
      if (!pass.includes(os[i])) {
        i++;
        continue;
      }
      const result = apply(ts[i], os[i], ts[i + 1]);
      steps.push({ a: ts[i], op: os[i], b: ts[i + 1], result });
      ts.splice(i, 2, result);
      os.splice(i, 1);
    }
  }
  return steps;
}

export function makeProblem(r: TaskRng): Problem {
  const { terms, ops } = r.pick(SHAPES)(r);
  const expression = terms.map((t, i) => (i === 0 ? `${t}` : `${ops[i - 1]} ${t}`)).join(' ');
  const steps = solveSteps(terms, ops);
  return {
    expression,
    question: r.pick(PHRASINGS).replace('{e}', expression),
    answer: steps[steps.length - 1].result,
    steps,
  };
}

/** The worked solution the SFT corpus teaches: one line per operation, then the boxed answer. */
export function workedSolution(steps: readonly Step[]): string {
  const lines = steps.map((s) => `${s.a} ${s.op} ${s.b} = ${s.result}`);
  return `${lines.join('\n')}\nThe answer is \\boxed{${steps[steps.length - 1].result}}.`;
}

/** A plausible wrong solution: one step's result is off (a carry slip or a digit error) and the error propagates. */
export function wrongSolution(p: Problem, r: TaskRng): string {
  const at = r.int(0, p.steps.length - 1);
  const out: Step[] = [];
  let carried: number | null = null;
  p.steps.forEach((s, i) => {
    const a = carried !== null && i > 0 && s.a === p.steps[i - 1].result ? carried : s.a;
    const b = carried !== null && i > 0 && s.b === p.steps[i - 1].result ? carried : s.b;
    let result = apply(a, s.op, b);
    if (i === at) {
      const slip = r.pick([1, 10, 100, 2, 9, 11]) * (r.next() < 0.5 ? -1 : 1);
      result = Math.abs(result + slip) === result ? result + Math.abs(slip) : Math.abs(result + slip);
    }
    out.push({ a, op: s.op, b, result });
    carried = result;
  });
  return workedSolution(out);
}

/** Problems keyed by expression, so splits never share a problem. */
export function problemSet(seed: number, count: number, exclude: ReadonlySet<string> = new Set()): Problem[] {
  const r = new TaskRng(seed);
  const seen = new Set(exclude);
  const out: Problem[] = [];
  while (out.length < count) {
    const p = makeProblem(r);
    if (seen.has(p.expression)) continue;
    seen.add(p.expression);
    out.push(p);
  }
  return out;
}

/** The critiques the built-in rule critics write for a wrong answer (builtin:ground-truth, builtin:indicative). */
export function ruleCritique(kind: 'ground-truth' | 'indicative', answer: number): string {
  return kind === 'ground-truth'
    ? `The generated solution is incorrect, the ground truth is ${answer}.`
    : 'The generated solution is incorrect.';
}

export const SPLITS = {
  validation: { seed: 20261206, count: 1000 },
  train: { seed: 7, count: 6000 },
} as const;

/** The validation split first, then a disjoint training split. */
export function arithmeticSplits(): { train: Problem[]; validation: Problem[] } {
  const validation = problemSet(SPLITS.validation.seed, SPLITS.validation.count);
  const train = problemSet(
    SPLITS.train.seed,
    SPLITS.train.count,
    new Set(validation.map((p) => p.expression)),
  );
  return { train, validation };
}
