// Critique-GRPO's sequence assembly in the real TrainingLoop on the tiny model (real generation,
// scoring and training in onnxruntime): for a scripted step, exactly which token spans are
// trained, under which context, with which advantages and weights; what the refinement prompt
// holds (question, previous solution, critique) and how it is kept within its budget; critic
// failures (fallback or drop, counted once); the optimizer steps a rollout step takes.
// The verifier and critic are in-process functions with fixed rules (no plugin sandbox needed).
import { join } from 'node:path';
import { type CriticInput, parseJobSpec, type VerifierInput } from '@cgrpo/contract';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromHyperparameters } from '../src/algo/config';
import { buildPromptMessages } from '../src/algo/prompt';
import { createEngine, type Engine, type Feed } from '../src/engine';
import type { Example } from '../src/job/dataset';
import { critiqueGrpoLoss } from '../src/job/loss-graph';
import type { JobPlugins } from '../src/job/plugins';
import { TrainingLoop } from '../src/job/train';
import { CausalLM, type ModelTrainer, type ScoredSequence } from '../src/model/model';
import { ROOT } from './harness';

const TINY = join(ROOT, 'gpu-runner', 'models', 'tiny-qwen3');
const TRAIN: Example[] = Array.from({ length: 8 }, (_, i) => ({
  line: i + 1,
  question: `What is ${i} plus ${i + 3}?`,
  reference: String(2 * i + 3),
  solution: `${i} + ${i + 3} = ${2 * i + 3}`,
}));

let engine: Engine;
beforeAll(async () => {
  engine = await createEngine({ device: 'cpu', threads: 1 });
});
afterAll(async () => {
  await engine?.close();
});

function specOf(hp: Record<string, unknown>) {
  const r = parseJobSpec({
    algorithm: 'critique-grpo',
    model: { id: 'tiny-qwen3', adapter: { type: 'lora', rank: 4, alpha: 8 } },
    datasets: { train: { uri: 'file:x.jsonl', fields: { solution: 'solution' } } },
    seed: 11,
    hyperparameters: {
      group_size: 3,
      prompts_per_step: 2,
      max_response_tokens: 5,
      max_prompt_tokens: 64,
      total_steps: 2,
      refine_trigger: 'always',
      mini_batches_per_step: 1,
      ...hp,
    },
  });
  if (!r.ok) throw new Error(JSON.stringify(r.fields));
  return r.spec;
}

/** 1 when the response has an even number of characters: a fixed rule of the text. */
const evenLength = (input: VerifierInput) => (input.response.length % 2 === 0 ? 1 : 0);

interface Recorded {
  seqs: ScoredSequence[];
  feeds: Record<string, Feed>;
}

/** The real trainer, with every optimizer step's sequences and loss inputs recorded. */
function recording(trainer: ModelTrainer, log: Recorded[], empties: { n: number }): ModelTrainer {
  return new Proxy(trainer, {
    get(target, prop, receiver) {
      if (prop === 'step')
        return (seqs: ScoredSequence[], feeds: Record<string, Feed>, opts?: unknown) => {
          log.push({ seqs, feeds });
          return target.step(seqs, feeds, opts as never);
        };
      if (prop === 'emptyStep')
        return () => {
          empties.n++;
          return target.emptyStep();
        };
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

async function setup(
  spec: ReturnType<typeof specOf>,
  critic: (
    input: CriticInput,
  ) => Promise<
    { ok: true; value: { critique: string }; ms: number } | { ok: false; reason: string; ms: number }
  >,
) {
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
    optimizer: { lr: 0.01, weightDecay: 0 },
  });
  const log: Recorded[] = [];
  const empties = { n: 0 };
  const criticInputs: CriticInput[] = [];
  const plugins: JobPlugins = {
    verify: async (input) => {
      const s = evenLength(input);
      return { ok: true, value: { score: s, correct: s === 1, details: {} }, ms: 0 };
    },
    critique: async (input) => {
      criticInputs.push(input);
      return critic(input);
    },
    shaping: null,
    sandboxed: [],
    dispose: () => {},
  };
  const loop = new TrainingLoop(spec, algo, model, recording(trainer, log, empties), plugins, TRAIN);
  return { loop, model, log, empties, criticInputs, close: () => model.close() };
}

const critiqueOf = async (input: CriticInput) => ({
  ok: true as const,
  value: { critique: `CRITIQUE: the answer should be ${input.reference}; ${input.response.length} chars.` },
  ms: 0,
});

describe('a scripted Critique-GRPO step in the real TrainingLoop', () => {
  it('trains refinements under the original prompt (no critique), with the group advantages and uniform weights', async () => {
    const spec = specOf({});
    const run = await setup(spec, critiqueOf);
    try {
      const r = await run.loop.step(1);
      expect(run.log).toHaveLength(1); // one mini-batch, one optimizer step
      const { seqs, feeds } = run.log[0];
      const n = spec.hyperparameters.group_size;
      const byQuestion = new Map<number, typeof r.rollouts>();
      for (const rec of r.rollouts)
        byQuestion.set(rec.prompt_index, [...(byQuestion.get(rec.prompt_index) ?? []), rec]);
      expect(byQuestion.size).toBe(2);

      // the context: the chat-formatted question alone, as RL samples it
      const tok = run.model.tokenizer;
      const originalPrompt = (q: number) => {
        const row = TRAIN.find((e) => e.line === byQuestion.get(q)![0].row)!;
        const text = tok.applyChatTemplate(
          buildPromptMessages(row.question, { systemPrompt: spec.hyperparameters.system_prompt }),
          { addGenerationPrompt: true },
        );
        return { row, text, tokens: tok.encode(text) };
      };

      let at = 0;
      for (const [q, recs] of [...byQuestion.entries()].sort((a, b) => a[0] - b[0])) {
        const prompt = originalPrompt(q);
        const initial = recs.filter((x) => x.kind === 'initial');
        const refinements = recs.filter((x) => x.kind === 'refinement');
        expect(initial).toHaveLength(n);
        expect(refinements).toHaveLength(n); // refine_trigger 'always': one per initial response
        const selected = refinements.filter((x) => x.selected);
        expect(selected).toHaveLength(1); // k = 1
        // every refinement was sampled from a prompt with the question, its previous solution and the critique
        for (const ref of refinements) {
          expect(ref.prompt).toContain(prompt.row.question);
          expect(ref.prompt).toContain(initial[ref.sample].response);
          expect(ref.prompt).toContain(ref.critique!);
          expect(ref.critique).toMatch(/^CRITIQUE: the answer should be/);
          expect(ref.trained_prompt).toBe(prompt.text);
          expect(ref.refinement_prompt_truncated).toBe(false);
        }
        // the advantages by hand (mean normalisation, §2.1): A = r − mean over the n + k group
        const rewards = [...initial.map((x) => x.reward!), selected[0].reward!];
        const m = rewards.reduce((a, b) => a + b, 0) / rewards.length;
        // the trained sequences of this question: n initial, then the selected refinement
        const mine = seqs.slice(at, at + n + 1);
        at += n + 1;
        mine.forEach((s, j) => {
          // under the original prompt, whatever they were sampled from
          expect(s.tokens.slice(0, s.start)).toEqual(prompt.tokens);
          const rec = j < n ? initial[j] : selected[0];
          expect(tok.decode(s.tokens.slice(s.start), { skipSpecialTokens: true })).toBe(rec.response);
          expect(rec.advantage).toBeCloseTo(rewards[j] - m, 12);
        });
        // the critique tokens never enter training
        for (const s of mine) expect(tok.decode(s.tokens)).not.toContain('CRITIQUE');
      }
      expect(seqs).toHaveLength(at);

      // per-token loss inputs: response positions only, the right kind flags, sum_over_max_len weights
      const tensor = (k: string) => feeds[k] as { dims: number[]; data: Float32Array };
      const [batch, width] = tensor('adv').dims;
      const data = (k: string) => tensor(k).data;
      const lMax = spec.hyperparameters.max_response_tokens;
      seqs.forEach((s, b) => {
        const isRef = b % (n + 1) === n;
        for (let t = 0; t < width; t++) {
          const inResponse = t + 1 >= s.start && t + 1 < s.tokens.length;
          const i = b * width + t;
          expect(data('is_initial')[i]).toBe(inResponse && !isRef ? 1 : 0);
          expect(data('is_refinement')[i]).toBe(inResponse && isRef ? 1 : 0);
          expect(data('weight')[i]).toBeCloseTo(inResponse ? 1 / (batch * lMax) : 0, 9);
        }
      });
      // π_old only for initial tokens (the refinement term is not a ratio)
      expect(r.values['refine/truncated_fraction']).toBe(0);
    } finally {
      await run.close();
    }
  }, 120_000);

  it('keeps the critique and question whole when the budget is tight: the previous solution is cut in its middle', async () => {
    const spec = specOf({ max_response_tokens: 12 });
    const run0 = await setup(spec, critiqueOf);
    let fixedAndQuestion: number;
    try {
      const r0 = await run0.loop.step(1);
      const ref = r0.rollouts.find((x) => x.kind === 'refinement')!;
      fixedAndQuestion = run0.model.tokenizer.encode(ref.prompt).length;
    } finally {
      await run0.close();
    }
    // a budget a few tokens under the full prompt: some previous solutions must give way
    const tight = specOf({ max_response_tokens: 12, max_refinement_prompt_tokens: fixedAndQuestion - 4 });
    const run = await setup(tight, critiqueOf);
    try {
      const r = await run.loop.step(1);
      const refinements = r.rollouts.filter((x) => x.kind === 'refinement');
      expect(refinements.length).toBeGreaterThan(0);
      for (const ref of refinements) {
        expect(run.model.tokenizer.encode(ref.prompt).length).toBeLessThanOrEqual(fixedAndQuestion - 4);
        expect(ref.prompt).toContain(TRAIN.find((e) => e.line === ref.row)!.question);
        expect(ref.prompt).toContain(ref.critique!);
        expect(ref.prompt).toContain('<|im_start|>system');
      }
      expect(refinements.some((x) => x.refinement_prompt_truncated)).toBe(true);
      expect(refinements.some((x) => x.prompt.includes('tokens omitted ...]'))).toBe(true);
      expect(r.values['refine/truncated_fraction']).toBeGreaterThan(0);
    } finally {
      await run.close();
    }
  }, 120_000);

  it('a failing critic falls back to the ground-truth template (default) and counts once; drop skips the refinement', async () => {
    const failing = async () => ({ ok: false as const, reason: 'critic down', ms: 0 });
    const fallback = await setup(specOf({ max_plugin_failure_ratio: 1 }), failing);
    try {
      const r = await fallback.loop.step(1);
      const refinements = r.rollouts.filter((x) => x.kind === 'refinement');
      expect(refinements).toHaveLength(6);
      for (const ref of refinements) {
        expect(ref.critique_source).toBe('fallback');
        expect(ref.critique).toMatch(
          /^The generated solution is (correct|incorrect), the ground truth is \d+\.$/,
        );
        expect(ref.prompt).toContain(ref.critique!);
      }
      expect(r.values['critique/calls']).toBe(6);
      expect(r.values['critique/failures']).toBe(6);
      expect(r.values['critique/fallbacks']).toBe(6);
    } finally {
      await fallback.close();
    }
    const drop = await setup(specOf({ critic_fallback: 'drop', max_plugin_failure_ratio: 1 }), failing);
    try {
      const r = await drop.loop.step(1);
      expect(r.rollouts.filter((x) => x.kind === 'refinement')).toHaveLength(0);
      expect(r.values['refinement/generated']).toBe(0);
      expect(r.values['critique/failures']).toBe(6);
    } finally {
      await drop.close();
    }
  }, 120_000);

  it('sends the worked solution to the critic when the dataset maps one (§8.7)', async () => {
    const run = await setup(specOf({}), critiqueOf);
    try {
      await run.loop.step(1);
      expect(run.criticInputs.length).toBe(6);
      for (const input of run.criticInputs) {
        const row = TRAIN.find((e) => e.question === input.question)!;
        expect(input.solution).toBe(row.solution);
      }
    } finally {
      await run.close();
    }
  }, 120_000);

  it('takes mini_batches_per_step × epochs_per_step optimizer steps every rollout step, empty mini-batches included', async () => {
    // 2 questions in 2 mini-batches × 2 epochs = 4 steps; with 1 question left (prompts 2, one
    // mini-batch per question) nothing changes: the schedule counts what the optimizer does
    const run = await setup(specOf({ mini_batches_per_step: 2, epochs_per_step: 2 }), critiqueOf);
    try {
      await run.loop.step(1);
      expect(run.log.length + run.empties.n).toBe(4);
      expect(run.empties.n).toBe(0);
    } finally {
      await run.close();
    }
  }, 120_000);
});
