// budget/critic_tokens in the real TrainingLoop on the tiny model: an LLM critic's critiques are
// counted by their length in the policy's tokenizer (the critique is all the runner sees of the
// LLM's answer); critiques of other critics and ground-truth fallbacks count 0.
import { join } from 'node:path';
import { parseJobSpec } from '@cgrpo/contract';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromHyperparameters } from '../src/algo/config';
import { createEngine, type Engine } from '../src/engine';
import type { Example } from '../src/job/dataset';
import { critiqueGrpoLoss } from '../src/job/loss-graph';
import type { JobPlugins } from '../src/job/plugins';
import { TrainingLoop } from '../src/job/train';
import { CausalLM } from '../src/model/model';
import { ROOT } from './harness';

const TINY = join(ROOT, 'gpu-runner', 'models', 'tiny-qwen3');
const TRAIN: Example[] = Array.from({ length: 4 }, (_, i) => ({
  line: i + 1,
  question: `What is ${i} plus ${i + 3}?`,
  reference: String(2 * i + 3),
}));
const CRITIQUE = 'The answer is wrong: add the two numbers again and check the carry.';

let engine: Engine;
beforeAll(async () => {
  engine = await createEngine({ device: 'cpu', threads: 1 });
});
afterAll(async () => {
  await engine?.close();
});

async function stepWith(critic: Record<string, unknown> | undefined, criticOk: boolean) {
  const r = parseJobSpec({
    algorithm: 'critique-grpo',
    model: { id: 'tiny-qwen3', adapter: { type: 'lora', rank: 4, alpha: 8 } },
    datasets: { train: { uri: 'file:x.jsonl' } },
    seed: 3,
    ...(critic ? { critic } : {}),
    hyperparameters: {
      group_size: 3,
      prompts_per_step: 2,
      max_response_tokens: 4,
      max_prompt_tokens: 64,
      total_steps: 1,
      refine_trigger: 'always',
      mini_batches_per_step: 1,
      max_plugin_failure_ratio: 1,
    },
  });
  if (!r.ok) throw new Error(JSON.stringify(r.fields));
  const spec = r.spec;
  const algo = fromHyperparameters(spec.hyperparameters, spec.algorithm);
  const model = await CausalLM.load(TINY, {
    engine,
    lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'], seed: spec.seed },
  });
  try {
    const trainer = await model.trainer({
      mode: 'lora',
      loss: critiqueGrpoLoss(algo),
      temperature: spec.hyperparameters.temperature,
      optimizer: { lr: 0.01, weightDecay: 0 },
    });
    const plugins: JobPlugins = {
      verify: async () => ({ ok: true, value: { score: 0, correct: false, details: {} }, ms: 0 }),
      critique: async () =>
        criticOk
          ? { ok: true, value: { critique: CRITIQUE }, ms: 0 }
          : { ok: false, reason: 'critic down', ms: 0 },
      shaping: null,
      sandboxed: [],
      dispose: () => {},
    };
    const step = await new TrainingLoop(spec, algo, model, trainer, plugins, TRAIN).step(1);
    return { values: step.values, perCritique: model.tokenizer.encode(CRITIQUE).length };
  } finally {
    await model.close();
  }
}

describe('budget/critic_tokens', () => {
  it("sums an LLM critic's critiques in tokens; other critics and fallbacks count 0", async () => {
    const llm = {
      plugin: 'builtin:llm',
      grants: ['llm.chat'],
      config: { endpoint_url: 'http://127.0.0.1:9/v1' },
    };
    const counted = await stepWith(llm, true);
    expect(counted.values['critique/calls']).toBe(6);
    expect(counted.perCritique).toBeGreaterThan(5);
    // 2 prompts × 3 responses, each critiqued once
    expect(counted.values['budget/critic_tokens']).toBe(6 * counted.perCritique);

    const fallback = await stepWith(llm, false);
    expect(fallback.values['critique/fallbacks']).toBe(6);
    expect(fallback.values['budget/critic_tokens']).toBe(0);

    const notLlm = await stepWith(undefined, true);
    expect(notLlm.values['critique/calls']).toBe(6);
    expect(notLlm.values['budget/critic_tokens']).toBe(0);
  }, 180_000);
});
