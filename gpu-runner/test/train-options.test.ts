// GRPO presets that need more than the plain loop, run through the real TrainingLoop on the tiny
// model (real generation, scoring and training in onnxruntime): DAPO dynamic sampling and the KL
// term to a frozen reference model (deepseekmath / verl-r1). The verifier is an in-process function
// with a fixed rule, so groups have the reward pattern each case needs.
import { join } from 'node:path';
import { parseJobSpec, type VerifierInput } from '@cgrpo/contract';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromHyperparameters } from '../src/algo/config';
import { createEngine, type Engine } from '../src/engine';
import type { Example } from '../src/job/dataset';
import { critiqueGrpoLoss } from '../src/job/loss-graph';
import type { JobPlugins } from '../src/job/plugins';
import { TrainingLoop } from '../src/job/train';
import { CausalLM } from '../src/model/model';
import { ROOT } from './harness';

const TINY = join(ROOT, 'gpu-runner', 'models', 'tiny-llama');
const TRAIN: Example[] = Array.from({ length: 12 }, (_, i) => ({
  line: i + 1,
  question: `${i} + ${i + 3}`,
  reference: String(2 * i + 3),
}));

let engine: Engine;
beforeAll(async () => {
  engine = await createEngine({ device: 'cpu' });
});
afterAll(async () => {
  await engine?.close();
});

function specOf(hp: Record<string, unknown>) {
  const r = parseJobSpec({
    algorithm: 'grpo',
    model: { id: 'tiny-llama', adapter: { type: 'lora', rank: 4, alpha: 8 } },
    datasets: { train: { uri: 'file:x.jsonl' } },
    seed: 5,
    hyperparameters: {
      group_size: 4,
      prompts_per_step: 2,
      max_response_tokens: 4,
      max_prompt_tokens: 32,
      total_steps: 3,
      system_prompt: '',
      prompt_template: '{question} =',
      mini_batches_per_step: 1,
      warmup_steps: 0,
      ...hp,
    },
  });
  if (!r.ok) throw new Error(JSON.stringify(r.fields));
  return r.spec;
}

function pluginsWith(score: (input: VerifierInput) => number): JobPlugins {
  return {
    verify: async (input) => {
      const s = score(input);
      return { ok: true, value: { score: s, correct: s === 1, details: {} }, ms: 0 };
    },
    critique: null,
    shaping: null,
    sandboxed: [],
    dispose: () => {},
  };
}

/** 1 for responses whose text has an even character code sum: about half, fixed per text. */
const coinFlip = (input: VerifierInput) =>
  [...input.response].reduce((a, ch) => a + ch.charCodeAt(0), 0) % 2 === 0 ? 1 : 0;

/** Questions `i + …` with odd i are never solved (zero-signal groups); the rest flip coins. */
const halfHopeless = (input: VerifierInput) =>
  Number.parseInt(input.question, 10) % 2 === 1 ? 0 : coinFlip(input);

async function loop(spec: ReturnType<typeof specOf>, plugins: JobPlugins, withReference = false) {
  const hp = spec.hyperparameters;
  const algo = fromHyperparameters(hp, spec.algorithm);
  const model = await CausalLM.load(TINY, {
    engine,
    lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'], seed: spec.seed },
  });
  const trainer = await model.trainer({
    mode: 'lora',
    loss: critiqueGrpoLoss(algo),
    temperature: hp.temperature,
    optimizer: { lr: 0.05, weightDecay: 0 },
  });
  const reference = withReference ? await CausalLM.load(TINY, { engine }) : null;
  return {
    loop: new TrainingLoop(spec, algo, model, trainer, plugins, TRAIN, reference),
    close: async () => {
      await model.close();
      await reference?.close();
    },
  };
}

describe('DAPO dynamic sampling', () => {
  it('keeps only groups with mixed rewards, sampling more prompts until prompts_per_step groups are kept', async () => {
    const spec = specOf({ preset: 'dapo', overlong_buffer: { length: 2 } });
    expect(spec.hyperparameters.dynamic_sampling).toEqual({ enabled: true, max_extra_rounds: 3 });
    const run = await loop(spec, pluginsWith(halfHopeless));
    try {
      const r = await run.loop.step(1);
      const kept = r.values['dynamic_sampling/kept_groups'] as number;
      const dropped = r.values['dynamic_sampling/dropped_groups'] as number;
      const rounds = r.values['dynamic_sampling/extra_rounds'] as number;
      expect(kept).toBe(2);
      expect(dropped).toBeGreaterThan(0);
      expect(rounds).toBeGreaterThan(0);
      expect(rounds).toBeLessThanOrEqual(3);
      // every sampled group was either kept or dropped, 2 per round
      expect(kept + dropped).toBeLessThanOrEqual(2 * (rounds + 1));
      expect(kept + dropped).toBeGreaterThan(2 * rounds);
      // what was trained on: each kept group's initial rewards are mixed
      const byPrompt = new Map<number, number[]>();
      for (const rec of r.rollouts)
        byPrompt.set(rec.prompt_index, [...(byPrompt.get(rec.prompt_index) ?? []), rec.reward as number]);
      expect(byPrompt.size).toBe(2);
      // only solvable questions (even i) were kept
      for (const rec of r.rollouts) expect((rec.row - 1) % 2).toBe(0);
      for (const rewards of byPrompt.values()) expect(new Set(rewards).size).toBe(2);
      expect(r.values.loss).toEqual(expect.any(Number));
      expect(r.values['groups/zero_signal']).toBe(0);
    } finally {
      await run.close();
    }
  }, 120_000);

  it('gives up after max_extra_rounds when no group has signal and trains on nothing that step', async () => {
    const spec = specOf({
      preset: 'dapo',
      overlong_buffer: { enabled: false },
      dynamic_sampling: { max_extra_rounds: 2 },
    });
    const run = await loop(
      spec,
      pluginsWith(() => 0),
    );
    try {
      const r = await run.loop.step(1);
      expect(r.values['dynamic_sampling/extra_rounds']).toBe(2);
      expect(r.values['dynamic_sampling/dropped_groups']).toBe(2 * 3);
      expect(r.values['dynamic_sampling/kept_groups']).toBe(0);
      expect(r.values.loss).toBeNull();
      expect(r.rollouts).toEqual([]);
    } finally {
      await run.close();
    }
  }, 120_000);

  it('is deterministic: the same seed gives the same kept rows and metrics', async () => {
    const spec = specOf({ preset: 'dapo', overlong_buffer: { length: 2 } });
    const values: Record<string, number | null>[] = [];
    const rows: number[][] = [];
    for (let i = 0; i < 2; i++) {
      const run = await loop(spec, pluginsWith(halfHopeless));
      try {
        const r = await run.loop.step(1);
        values.push(
          Object.fromEntries(Object.entries(r.values).filter(([k]) => !/time|second|latency/.test(k))),
        );
        rows.push(r.rollouts.map((x) => x.row));
      } finally {
        await run.close();
      }
    }
    expect(values[1]).toEqual(values[0]);
    expect(rows[1]).toEqual(rows[0]);
  }, 120_000);
});

describe('KL to a reference model', () => {
  it('is 0 while the policy equals the reference and grows once training moves it', async () => {
    const spec = specOf({ preset: 'deepseekmath', group_size: 4 });
    expect(spec.hyperparameters.kl_coef).toBe(0.04);
    const run = await loop(spec, pluginsWith(coinFlip), true);
    try {
      const first = await run.loop.step(1);
      // LoRA starts as a no-op (B = 0): π_θ = π_ref, so k3 KL is exactly 0 before the first update
      expect(first.values.kl).toBe(0);
      const second = await run.loop.step(2);
      expect(second.values.kl).toBeGreaterThan(0);
      expect(Number.isFinite(second.values.loss)).toBe(true);
    } finally {
      await run.close();
    }
  }, 120_000);

  it('refuses to build a loop with a KL term but no reference model', async () => {
    const spec = specOf({ preset: 'verl-r1' });
    await expect(loop(spec, pluginsWith(coinFlip), false)).rejects.toThrow(/needs a reference model/);
  });
});
