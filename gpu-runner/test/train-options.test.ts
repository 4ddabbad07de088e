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
import { lossFeeds, TrainingLoop, type TrainSequence } from '../src/job/train';
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

describe('micro_batch_size: gradient accumulation inside one optimizer step', () => {
  // Five sequences of different lengths (so each micro-batch packs to its own width) with KL,
  // clipping, entropy and gradient clipping on: k micro-batches + one AdamW step must equal one
  // step on the packed mini-batch, twice in a row (moments and step counter included).
  async function run(microBatchSize: number | null) {
    const h = specOf({
      clip_initial: true,
      kl_coef: 0.05,
      entropy_coef: 0.01,
      max_grad_norm: 0.05,
      loss_aggregation: 'seq_mean_token_mean',
    }).hyperparameters;
    const algo = fromHyperparameters(h, 'critique-grpo');
    const model = await CausalLM.load(TINY, {
      engine,
      lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'], seed: 9 },
    });
    try {
      const tok = model.tokenizer;
      const texts = [' 7', ' 8 because 9', ' 7 after all', ' 12 or 13 or', ' 3'];
      const seqs: TrainSequence[] = texts.map((t, i) => {
        const p = tok.encode(`${i} + 4 =`);
        return {
          kind: i === 2 ? 'refinement' : 'initial',
          question: i < 3 ? 0 : 1,
          sample: i,
          advantage: [0.5, -0.25, 0.8, -0.3, 0.4][i],
          tokens: [...p, ...tok.encode(t)],
          start: p.length,
        };
      });
      const scored = await model.score(seqs);
      seqs.forEach((s, i) => {
        const lp = scored[i].logp;
        if (s.kind === 'initial') s.logpOld = lp.map((v, t) => v + 0.3 * Math.sin(3 * i + t));
        s.logpRef = lp.map((v, t) => v + Math.cos(2 * i + t));
      });
      const trainer = await model.trainer({
        mode: 'lora',
        loss: critiqueGrpoLoss(algo),
        optimizer: { lr: 0.01, weightDecay: 0.01, maxGradNorm: h.max_grad_norm },
      });
      const results = [];
      for (let step = 0; step < 2; step++)
        results.push(await trainer.step(seqs, lossFeeds(seqs, algo), { microBatchSize }));
      const w = await model.weights();
      const lora = new Map([...w].filter(([k]) => k.includes('lora_')));
      return { results, lora, opt: await trainer.optimizerState() };
    } finally {
      await model.close();
    }
  }

  it('2 + 2 + 1 sequences accumulated == one packed batch (1e-5), loss, grad norm and metrics too', async () => {
    const packed = await run(null);
    const micro = await run(2);
    expect(packed.results[0].gradNorm).toBeGreaterThan(0.05); // the clip acts on the sum
    for (const [i, r] of micro.results.entries()) {
      const p = packed.results[i];
      expect(Math.abs(r.loss - p.loss)).toBeLessThan(1e-5);
      expect(Math.abs((r.gradNorm ?? 0) - (p.gradNorm ?? 0))).toBeLessThan(1e-5);
      expect(r.lr).toBe(p.lr);
      for (const k of ['policy_loss', 'entropy_mean', 'clip_frac', 'kl_mean'])
        expect(Math.abs(r.metrics[k][0] - p.metrics[k][0]), k).toBeLessThan(1e-5);
    }
    let moved = 0;
    expect(packed.lora.size).toBeGreaterThan(0);
    for (const [k, a] of packed.lora) {
      const b = micro.lora.get(k) as Float32Array;
      for (let i = 0; i < a.length; i++) {
        expect(Math.abs(a[i] - b[i]), `${k}[${i}]`).toBeLessThan(1e-5);
        if (Math.abs(a[i]) > 1e-4) moved++;
      }
    }
    expect(moved).toBeGreaterThan(100);
    for (const [k, v] of Object.entries(packed.opt))
      for (let i = 0; i < v.length; i++) expect(Math.abs(v[i] - micro.opt[k][i]), k).toBeLessThan(1e-5);
  }, 120_000);

  it('an empty mini-batch still takes its optimizer step (zero gradient): the schedule stays on count', async () => {
    const model = await CausalLM.load(TINY, {
      engine,
      lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj'], seed: 9 },
    });
    try {
      const algo = fromHyperparameters(specOf({}).hyperparameters, 'grpo');
      const trainer = await model.trainer({
        mode: 'lora',
        loss: critiqueGrpoLoss(algo),
        optimizer: { lr: { kind: 'linear', lr: 1, warmupSteps: 2, totalSteps: 10 }, weightDecay: 0 },
      });
      const before = await model.weights();
      // HF linear warmup: update 1 → λ(0) = 0, update 2 → λ(1) = 0.5
      const [a, b] = [await trainer.emptyStep(), await trainer.emptyStep()];
      expect([a.lr, b.lr, a.loss, a.gradNorm]).toEqual([0, 0.5, 0, null]);
      const after = await model.weights();
      const lora = [...before.keys()].filter((n) => n.includes('lora_'));
      expect(lora.length).toBeGreaterThan(0);
      for (const k of lora) expect(after.get(k)).toEqual(before.get(k));
      const opt = await trainer.optimizerState();
      expect(opt['optimizer.step'][0]).toBe(3);
    } finally {
      await model.close();
    }
  });
});
