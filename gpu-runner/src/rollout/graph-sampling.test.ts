// In-graph sampling (the decode-chunk graph's head) against the JS sampler and the exact target
// distribution, and the rollout loop that uses it by default.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../engine';
import { buildSampleGraph, type SampleMode } from '../model/graphs';
import { CausalLM } from '../model/model';
import { Rng } from '../model/rng';
import { generate } from './generate';
import { type SamplingOptions, sampleToken, tokenLogProb } from './sampling';

let engine: Engine;
beforeAll(async () => {
  engine = await createEngine();
});
afterAll(async () => {
  await engine.close();
});

// id 11 is a padded embedding row (at or above the vocabulary limit) with the largest logit:
// neither sampler may ever produce it
const LOGITS = [2.0, 1.5, 1.2, 0.9, 0.5, 0.3, 0.1, -0.2, -0.6, -1.0, -1.5, 5.0];
const V = LOGITS.length;
const LIMIT = 11;
const N = 20000;

/** The target distribution, from the definitions (float64): softmax(l / T) over the top-k ids,
 *  then the most probable ids whose mass before them is below top_p of the candidates' mass. */
function exact(o: SamplingOptions): number[] {
  const order = LOGITS.slice(0, LIMIT)
    .map((_, i) => i)
    .sort((a, b) => LOGITS[b] - LOGITS[a]);
  const kept = o.topK > 0 ? order.slice(0, o.topK) : order;
  const w = kept.map((i) => Math.exp((LOGITS[i] - LOGITS[order[0]]) / o.temperature));
  const z = w.reduce((a, b) => a + b, 0);
  const out = new Array<number>(V).fill(0);
  let before = 0;
  let mass = 0;
  const support: number[] = [];
  for (let j = 0; j < kept.length && before < o.topP * z; j++) {
    support.push(j);
    mass += w[j];
    before += w[j];
  }
  for (const j of support) out[kept[j]] = w[j] / mass;
  return out;
}

/** χ² upper critical value for p = 0.001 (Wilson–Hilferty; within 1% of the tables for df ≥ 2). */
function chi2Critical001(df: number): number {
  const z = 3.0902; // standard normal upper 0.001 quantile
  const a = 2 / (9 * df);
  return df * (1 - a + z * Math.sqrt(a)) ** 3;
}

function chi2(counts: number[], probs: number[]): { stat: number; df: number; outside: number } {
  let stat = 0;
  let df = -1;
  let outside = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) {
      outside += counts[i];
      continue;
    }
    const e = probs[i] * N;
    stat += (counts[i] - e) ** 2 / e;
    df++;
  }
  return { stat, df, outside };
}

async function graphSamples(o: SamplingOptions, seed: number, candidates?: number) {
  const mode: SampleMode =
    o.temperature <= 0 ? 'greedy' : (o.topK > 0 && o.topK < LIMIT) || o.topP < 1 ? 'sorted' : 'full';
  const g = await engine.load(buildSampleGraph(V, mode, LIMIT, candidates));
  const logits = new Float32Array(N * V);
  for (let r = 0; r < N; r++) logits.set(LOGITS, r * V);
  const rng = new Rng(seed);
  const uniform = Float32Array.from({ length: N }, () => rng.next());
  const { outputs } = await g.run({
    logits: { dims: [N, V], data: logits },
    uniform: { dims: [N], data: uniform },
    temperature: { dims: [], data: Float32Array.of(o.temperature > 0 ? o.temperature : 1) },
    top_k: { dims: [1], data: BigInt64Array.of(BigInt(o.topK > 0 && o.topK < LIMIT ? o.topK : LIMIT)) },
    top_p: { dims: [], data: Float32Array.of(o.topP) },
  });
  const tokens = Array.from(outputs.token.data as BigInt64Array, Number);
  return { tokens, logp: Array.from(outputs.logp.data as Float32Array) };
}

function jsSamples(o: SamplingOptions, seed: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: N }, () => sampleToken(LOGITS, o, rng, LIMIT));
}

const histogram = (tokens: number[]) => {
  const c = new Array<number>(V).fill(0);
  for (const t of tokens) c[t]++;
  return c;
};

describe('in-graph sampling head: same distribution as the JS sampler', () => {
  // candidates 3: the bounded TopK is too small for some cases (top-k 5 and 7, the nucleus of
  // top-p 0.8 at T 1), so the whole-sort branch runs; T 0.3 / top-p 0.9 fits in 3 (bounded branch)
  it.each(
    [
      { temperature: 1, topK: 0, topP: 1 },
      { temperature: 0.6, topK: 0, topP: 1 },
      { temperature: 1.4, topK: 5, topP: 1 },
      { temperature: 1, topK: 0, topP: 0.8 },
      { temperature: 0.3, topK: 0, topP: 0.9 },
      { temperature: 0.8, topK: 7, topP: 0.9 },
      { temperature: 2.5, topK: 3, topP: 0.5 },
    ].flatMap((o) => [
      { ...o, candidates: 1024 },
      { ...o, candidates: 3 },
    ]),
  )(
    'χ² (p = 0.001) against the exact probabilities: T $temperature, top-k $topK, top-p $topP, $candidates candidates',
    async ({ candidates, ...o }) => {
      const target = exact(o);
      const g = await graphSamples(o, 7, candidates);
      const js = jsSamples(o, 7);
      for (const [who, tokens] of [
        ['graph', g.tokens],
        ['js', js],
      ] as const) {
        const r = chi2(histogram(tokens), target);
        expect(r.outside, `${who}: samples outside the support`).toBe(0);
        expect(r.stat, `${who}: χ² ${r.stat.toFixed(1)} with ${r.df} df`).toBeLessThan(chi2Critical001(r.df));
      }
      // the reported log-prob is log softmax(logits / T) of the sampled id over the vocabulary limit
      for (let i = 0; i < 50; i++) {
        expect(g.logp[i]).toBeCloseTo(tokenLogProb(LOGITS, g.tokens[i], o.temperature, LIMIT), 4);
      }
    },
  );

  it('greedy (temperature 0) is the argmax below the vocabulary limit', async () => {
    const o = { temperature: 0, topK: 0, topP: 1 };
    const g = await graphSamples(o, 3);
    expect(new Set(g.tokens)).toEqual(new Set([0]));
    expect(new Set(jsSamples(o, 3))).toEqual(new Set([0]));
  });
});

describe('generate with the in-graph sampler (tiny-qwen2)', () => {
  let model: CausalLM;
  let prompts: number[][];
  beforeAll(async () => {
    model = await CausalLM.load(join(import.meta.dirname, '..', '..', 'models', 'tiny-qwen2'), { engine });
    const t = model.tokenizer;
    prompts = [
      t.encode(t.applyChatTemplate([{ role: 'user', content: 'What is 12 + 35?' }])),
      t.encode('Hello there'),
    ];
  });
  afterAll(async () => {
    await model.close();
  });

  it('greedy: the same tokens as the JS sampler across chunk boundaries (ragged batch, KV carried)', async () => {
    const opts = { maxNewTokens: 12, temperature: 0, eosTokenIds: [] };
    const js = await generate(model, prompts, { ...opts, sampler: 'js' });
    const stats = { prefillMs: 0, decodeMs: 0, steps: 0, generatedTokens: 0 };
    const graph = await generate(model, prompts, { ...opts, chunk: 8 }, stats);
    expect(graph.map((c) => c.tokens)).toEqual(js.map((c) => c.tokens));
    // 11 tokens after the prefill's: runs of 8, 2, 1
    expect(stats.steps).toBe(3);
    for (const [i, c] of graph.entries()) {
      expect(c.logprobs).toHaveLength(c.tokens.length);
      for (const [j, lp] of (c.logprobs ?? []).entries()) {
        expect(lp).toBeCloseTo(js[i].logprobs?.[j] ?? Number.NaN, 4);
      }
    }
  });

  it('stops a row at EOS inside a chunk and drops what it sampled after it', async () => {
    const greedy = await generate(model, prompts, { maxNewTokens: 8, temperature: 0, eosTokenIds: [] });
    const eos = [greedy[0].tokens[3]];
    const opts = { maxNewTokens: 8, temperature: 0, eosTokenIds: eos };
    const js = await generate(model, prompts, { ...opts, sampler: 'js' });
    const graph = await generate(model, prompts, { ...opts, chunk: 8 });
    expect(graph.map((c) => [c.tokens, c.finishReason])).toEqual(js.map((c) => [c.tokens, c.finishReason]));
    expect(graph[0].finishReason).toBe('eos');
    expect(graph[0].tokens.length).toBeLessThanOrEqual(4);
  });

  it('a seeded rollout is reproducible run to run; chunk size does not change the draws', async () => {
    const opts = { maxNewTokens: 10, temperature: 0.9, topP: 0.9, topK: 40, n: 3, seed: 5, eosTokenIds: [] };
    const a = await generate(model, prompts, { ...opts, chunk: 8 });
    const b = await generate(model, prompts, { ...opts, chunk: 8 });
    expect(a.map((c) => c.tokens)).toEqual(b.map((c) => c.tokens));
    expect(a.map((c) => c.logprobs)).toEqual(b.map((c) => c.logprobs));
    const one = await generate(model, prompts, { ...opts, chunk: 1 });
    expect(one.map((c) => c.tokens)).toEqual(a.map((c) => c.tokens));
    const other = await generate(model, prompts, { ...opts, seed: 6, chunk: 8 });
    expect(other.map((c) => c.tokens)).not.toEqual(a.map((c) => c.tokens));
    expect(new Set(a.filter((c) => c.prompt === 0).map((c) => c.tokens.join())).size).toBeGreaterThan(1);
  });

  it('decodes 64 sequences in one batch', async () => {
    const t = model.tokenizer;
    const many = Array.from({ length: 8 }, (_, i) => t.encode(`Question ${i}: what is ${i} + ${i * 3}?`));
    const out = await generate(model, many, { maxNewTokens: 5, n: 8, seed: 1, eosTokenIds: [] });
    expect(out).toHaveLength(64);
    expect(out.every((c) => c.tokens.length === 5 && c.logprobs?.length === 5)).toBe(true);
  });

  it('rejects a chunk outside 1..64', async () => {
    await expect(generate(model, prompts, { maxNewTokens: 4, chunk: 0 })).rejects.toThrow(
      /generate_bad_option: chunk/,
    );
  });
});
