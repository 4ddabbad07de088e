// The shipped task and the starter model are regenerated, not trusted: the arithmetic generator
// writes the committed files byte for byte with disjoint splits, and the starter-model script's
// first steps give the same weights bytes on a rerun (one thread, deterministic CPU kernels).
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeArithmeticTask } from '../../examples/arithmetic/generate';
import { makeStarterModel } from '../scripts/make-starter-model';
import { ROOT } from './harness';

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const SHIPPED = join(ROOT, 'examples', 'datasets', 'arithmetic');

describe('the arithmetic task', () => {
  it('regenerates the committed files byte for byte, with no validation problem in training', () => {
    const dir = mkdtempSync(join(tmpdir(), 'arith-'));
    writeArithmeticTask(dir);
    for (const f of ['train.jsonl', 'validation.jsonl', 'feedback.jsonl'])
      expect(sha(join(dir, f))).toBe(sha(join(SHIPPED, f)));
    const rows = (f: string) =>
      readFileSync(join(dir, f), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { prompt: string; answer: string; solution: string });
    const expr = (q: string) => q.replace(/^(Compute|What is|Evaluate|Calculate) /, '').replace(/[.?]$/, '');
    const train = new Set(rows('train.jsonl').map((r) => expr(r.prompt)));
    const validation = rows('validation.jsonl');
    expect(train.size).toBe(6000);
    expect(validation).toHaveLength(1000);
    for (const r of validation) expect(train.has(expr(r.prompt))).toBe(false);
    // every answer is the value of its expression (× before +/−, left to right)
    for (const r of validation.slice(0, 200)) {
      const value = Function(`return (${expr(r.prompt)})`)() as number;
      expect(String(value)).toBe(r.answer);
      expect(r.solution.endsWith(`\\boxed{${r.answer}}.`)).toBe(true);
    }
  });
});

describe('the starter-model script', () => {
  it('gives the same weights bytes for the same seed (first 2 steps, twice)', async () => {
    const runs: string[] = [];
    for (let i = 0; i < 2; i++) {
      const out = join(mkdtempSync(join(tmpdir(), 'starter-')), 'model');
      const log = await makeStarterModel(out, { maxSteps: 2 });
      expect(log).toHaveLength(2);
      expect(log[1].loss).toBeLessThan(log[0].loss + 1);
      runs.push(sha(join(out, 'model.safetensors')));
      expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).model_type).toBe('qwen3');
    }
    expect(runs[1]).toBe(runs[0]);
  }, 300_000);
});
