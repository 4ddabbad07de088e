// The `npm start` demo, shortened (2 Critique-GRPO steps, 16 evaluation problems), against the real
// API and a real runner process: evaluation of the starter model, the Critique-GRPO job, evaluation
// of its final checkpoint on the same problems, and the summary a newcomer reads.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalApi, startApi } from './harness';

let api: LocalApi;
beforeAll(async () => {
  api = await startApi();
}, 120_000);
afterAll(async () => {
  await api?.stop();
});

describe('npm start demo', () => {
  it('evaluates the starter, trains it with Critique-GRPO, and evaluates the result on the same problems', async () => {
    process.env.CGRPO_DEMO_STEPS = '2';
    process.env.CGRPO_DEMO_EVAL = '16';
    const { runDemo } = await import('../../scripts/demo.mjs');
    const lines: string[] = [];
    const runner = await runDemo({
      url: api.url,
      apiKey: api.apiKey,
      registrationKey: api.registrationKey,
      out: (l: string) => lines.push(l),
    });
    try {
      const text = lines.join('\n');
      expect(text).toMatch(/\[demo\] before: pass@1 \d+\.\d% \(95% CI/);
      expect(text).toMatch(/\[demo\] step +2\/2 /);
      expect(text).toMatch(/pass@1 on 16 held-out problems \(greedy, same sample\): \d+\.\d% → \d+\.\d%/);
      expect(text).toMatch(/refinement success/);
      expect(text).toContain('Q: ');
      expect(text).toContain('docs/quickstart.md');
      expect(text).not.toContain('ended failed');
    } finally {
      runner.stop();
    }
  }, 600_000);
});
