// Writes the shipped arithmetic task (examples/datasets/arithmetic/):
//   train.jsonl       6,000 problems {prompt, answer, solution} (solution: a short worked solution)
//   validation.jsonl  1,000 problems disjoint from train (no expression in both)
//   feedback.jsonl    3,000 refinement-format rows {prompt, completion, answer}: the refinement
//                     prompt (question, a wrong previous solution, a rule critique) → a corrected
//                     solution, so a model learns to use critiques as instruction-tuned models do
// Deterministic: the same bytes on every run. Usage: npm run data:arithmetic [-- outDir]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_REFINEMENT_PROMPT_TEMPLATE } from '@cgrpo/contract';
import {
  arithmeticSplits,
  type Problem,
  ruleCritique,
  TaskRng,
  workedSolution,
  wrongSolution,
} from './arithmetic';

const FEEDBACK_ROWS = 3000;

function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{([a-z_]+)\}/g, (whole, name: string) => values[name] ?? whole);
}

function problemRow(p: Problem): string {
  return JSON.stringify({ prompt: p.question, answer: String(p.answer), solution: workedSolution(p.steps) });
}

/** A refinement prompt exactly as the runner renders it with the default template. */
export function feedbackRow(p: Problem, r: TaskRng): { prompt: string; completion: string; answer: string } {
  const critique = ruleCritique(r.next() < 0.75 ? 'ground-truth' : 'indicative', p.answer);
  const prompt = fill(DEFAULT_REFINEMENT_PROMPT_TEMPLATE, {
    question: p.question,
    previous_solution: wrongSolution(p, r),
    critique,
  });
  return { prompt, completion: workedSolution(p.steps), answer: String(p.answer) };
}

export function writeArithmeticTask(outDir: string): void {
  mkdirSync(outDir, { recursive: true });
  const { train, validation } = arithmeticSplits();
  const lines = (rows: string[]) => `${rows.join('\n')}\n`;
  writeFileSync(join(outDir, 'train.jsonl'), lines(train.map(problemRow)));
  writeFileSync(join(outDir, 'validation.jsonl'), lines(validation.map(problemRow)));
  const r = new TaskRng(99);
  writeFileSync(
    join(outDir, 'feedback.jsonl'),
    lines(train.slice(0, FEEDBACK_ROWS).map((p) => JSON.stringify(feedbackRow(p, r)))),
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const out = resolve(process.argv[2] ?? join(import.meta.dirname, '..', 'datasets', 'arithmetic'));
  writeArithmeticTask(out);
  console.log(`wrote ${out}/{train,validation,feedback}.jsonl`);
}
