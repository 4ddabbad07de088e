// The in-graph decode loop (ONNX Loop + in-graph sampling) against the per-step loop.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../engine';
import { CausalLM } from '../model/model';
import { generate, generateInGraph } from './generate';

const MODELS = join(import.meta.dirname, '..', '..', 'models');
let engine: Engine;
beforeAll(async () => {
  engine = await createEngine();
});
afterAll(async () => {
  await engine.close();
});

describe.each(['qwen2', 'qwen3', 'llama'] as const)('generateInGraph on tiny-%s', (fam) => {
  let model: CausalLM;
  let prompts: number[][];
  beforeAll(async () => {
    model = await CausalLM.load(join(MODELS, `tiny-${fam}`), { engine });
    const t = model.tokenizer;
    prompts = [
      t.encode(t.applyChatTemplate([{ role: 'user', content: 'What is 12 + 35?' }])),
      t.encode('Hello there'),
    ];
  });
  afterAll(async () => {
    await model.close();
  });

  it('greedy: the same tokens as the per-step KV-cache loop, ragged batch included', async () => {
    const opts = { maxNewTokens: 8, temperature: 0, eosTokenIds: [] };
    const stepwise = await generate(model, prompts, opts);
    const inGraph = await generateInGraph(model, prompts, opts);
    expect(inGraph.map((c) => c.tokens)).toEqual(stepwise.map((c) => c.tokens));
    expect(inGraph.every((c) => c.finishReason === 'length' && c.tokens.length === 8)).toBe(true);
  });

  it('stops rows at EOS (and the loop once every row has)', async () => {
    const greedy = await generate(model, prompts, { maxNewTokens: 6, temperature: 0, eosTokenIds: [] });
    const eos = [greedy[0].tokens[1], greedy[1].tokens[2]];
    const stepwise = await generate(model, prompts, { maxNewTokens: 6, temperature: 0, eosTokenIds: eos });
    const stats = { prefillMs: 0, decodeMs: 0, steps: 0, generatedTokens: 0 };
    const inGraph = await generateInGraph(
      model,
      prompts,
      { maxNewTokens: 6, temperature: 0, eosTokenIds: eos },
      stats,
    );
    expect(inGraph.map((c) => [c.tokens, c.finishReason])).toEqual(
      stepwise.map((c) => [c.tokens, c.finishReason]),
    );
    expect(inGraph.every((c) => c.finishReason === 'eos')).toBe(true);
    expect(stats.steps).toBeLessThan(5);
  });
});

describe('generateInGraph sampling (tiny-llama)', () => {
  it('is reproducible per seed, honours top-k, and rejects stop strings', async () => {
    const model = await CausalLM.load(join(MODELS, 'tiny-llama'), { engine });
    const prompts = ['Hello there', 'The quick brown fox'];
    const opts = { maxNewTokens: 10, temperature: 1, topP: 0.95, n: 3, seed: 5, eosTokenIds: [] };
    const a = await generateInGraph(model, prompts, opts);
    const b = await generateInGraph(model, prompts, opts);
    const c = await generateInGraph(model, prompts, { ...opts, seed: 6 });
    expect(a.map((x) => x.tokens)).toEqual(b.map((x) => x.tokens));
    expect(c.map((x) => x.tokens)).not.toEqual(a.map((x) => x.tokens));
    expect(new Set(a.filter((x) => x.prompt === 0).map((x) => x.tokens.join())).size).toBeGreaterThan(1);
    const greedy = await generateInGraph(model, prompts, {
      maxNewTokens: 10,
      temperature: 0,
      eosTokenIds: [],
    });
    const k1 = await generateInGraph(model, prompts, {
      maxNewTokens: 10,
      temperature: 1.5,
      topK: 1,
      seed: 2,
      eosTokenIds: [],
    });
    expect(k1.map((x) => x.tokens)).toEqual(greedy.map((x) => x.tokens));
    await expect(generateInGraph(model, prompts, { maxNewTokens: 4, stop: ['\n'] })).rejects.toThrow(
      /generate_bad_option: stop/,
    );
    await model.close();
  });
});
