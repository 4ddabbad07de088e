import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CausalLM } from '../model/model';
import { Rng } from '../model/rng';
import { generate } from './generate';
import { candidates, findStop, sampleToken } from './sampling';

describe('sampleToken', () => {
  const logits = [2, 1, 0.5, 0, -1, -3];
  const freq = (opts: { temperature: number; topK: number; topP: number }, n = 20000) => {
    const rng = new Rng(42);
    const c = new Array(logits.length).fill(0);
    for (let i = 0; i < n; i++) c[sampleToken(logits, opts, rng)]++;
    return c.map((x) => x / n);
  };
  const softmax = (xs: number[], t = 1) => {
    const e = xs.map((x) => Math.exp(x / t));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / z);
  };

  it('is greedy at temperature 0 and honours the vocabulary limit', () => {
    expect(sampleToken(logits, { temperature: 0, topK: 0, topP: 1 }, new Rng(1))).toBe(0);
    expect(sampleToken([0, 1, 9], { temperature: 0, topK: 0, topP: 1 }, new Rng(1), 2)).toBe(1);
  });

  it('samples softmax(logits / T)', () => {
    const f = freq({ temperature: 0.8, topK: 0, topP: 1 });
    const p = softmax(logits, 0.8);
    for (let i = 0; i < p.length; i++) expect(Math.abs(f[i] - p[i])).toBeLessThan(0.015);
  });

  it('top-k keeps the k largest, renormalized', () => {
    const f = freq({ temperature: 1, topK: 2, topP: 1 });
    const p = softmax([2, 1]);
    expect(Math.abs(f[0] - p[0])).toBeLessThan(0.015);
    expect(f.slice(2).every((x) => x === 0)).toBe(true);
  });

  it('top-p keeps the smallest prefix whose mass reaches p', () => {
    const p = softmax(logits);
    // p[0] ≈ 0.55, p[0]+p[1] ≈ 0.76: top-p 0.7 keeps exactly tokens 0 and 1
    expect(p[0]).toBeLessThan(0.7);
    expect(p[0] + p[1]).toBeGreaterThan(0.7);
    const f = freq({ temperature: 1, topK: 0, topP: 0.7 });
    expect(f.slice(2).every((x) => x === 0)).toBe(true);
    expect(Math.abs(f[0] - p[0] / (p[0] + p[1]))).toBeLessThan(0.015);
  });

  it('selects the same top-k / top-p candidates as sorting the whole vocabulary', () => {
    const rng = new Rng(5);
    for (let trial = 0; trial < 50; trial++) {
      const V = 50 + Math.floor(rng.next() * 500);
      // ties included: logits drawn from a small set of values half of the time
      const row = Array.from({ length: V }, () =>
        trial % 2 ? Math.round(rng.normal() * 2) : rng.normal() * 3,
      );
      const topK = trial % 3 === 0 ? 0 : 1 + Math.floor(rng.next() * 40);
      const topP = trial % 5 === 0 ? 1 : 0.3 + 0.69 * rng.next();
      const c = candidates(row, { temperature: 0.9, topK, topP });
      const got = Array.from(c.ids.subarray(0, c.n));
      // brute force: sort by probability, cut at k, then the smallest prefix reaching topP of the mass
      const order = row.map((_, i) => i).sort((a, b) => row[b] - row[a]);
      const kept = topK > 0 ? order.slice(0, topK) : order;
      const w = kept.map((i) => Math.exp((row[i] - row[order[0]]) / 0.9));
      const z = w.reduce((a, b) => a + b, 0);
      let n = 0;
      for (let acc = 0; n < kept.length; ) {
        acc += w[n++];
        if (topP < 1 && acc >= topP * z * (1 - 1e-12)) break;
      }
      expect(got.length).toBe(n);
      // equal-probability ties at the boundary may be broken either way: compare the probabilities
      const probs = (ids: number[]) => ids.map((i) => row[i]).sort((a, b) => b - a);
      expect(probs(got)).toEqual(probs(kept.slice(0, n)));
    }
  });

  it('finds the earliest stop string', () => {
    expect(findStop('abc###def\n\n', ['\n\n', '###'])).toEqual({ index: 3, stop: '###' });
    expect(findStop('abc', ['x'])).toBeNull();
  });
});

describe('generate (tiny-llama)', () => {
  let model: CausalLM;
  let prompts: number[][];
  beforeAll(async () => {
    model = await CausalLM.load(join(import.meta.dirname, '..', '..', 'models', 'tiny-llama'));
    const t = model.tokenizer;
    prompts = [
      t.encode(t.applyChatTemplate([{ role: 'user', content: 'What is 2 + 2?' }])),
      t.encode('Hello world!'),
    ];
  });
  afterAll(async () => {
    await model.close();
  });

  it('is reproducible for a seed, and n samples per prompt differ from each other', async () => {
    const opts = { maxNewTokens: 12, temperature: 1, topP: 0.95, n: 4, seed: 11, eosTokenIds: [] };
    const a = await generate(model, prompts, opts);
    const b = await generate(model, prompts, opts);
    expect(a.map((c) => c.tokens)).toEqual(b.map((c) => c.tokens));
    expect(a.map((c) => [c.prompt, c.sample])).toEqual(
      [0, 1].flatMap((p) => [0, 1, 2, 3].map((s) => [p, s])),
    );
    expect(new Set(a.filter((c) => c.prompt === 0).map((c) => c.tokens.join())).size).toBeGreaterThan(1);
    const c = await generate(model, prompts, { ...opts, seed: 12 });
    expect(c.map((x) => x.tokens)).not.toEqual(a.map((x) => x.tokens));
    // a sample depends on (seed, prompt index, sample index), not on the other prompts in the batch
    const alone = await generate(model, [prompts[0]], opts);
    expect(alone.map((x) => x.tokens)).toEqual(a.filter((x) => x.prompt === 0).map((x) => x.tokens));
  });

  it('serializes concurrent generations on one model (they share its KV cache state)', async () => {
    const opts = { maxNewTokens: 6, temperature: 0, eosTokenIds: [] };
    const one = await generate(model, [prompts[0]], opts);
    const two = await generate(model, [prompts[1]], opts);
    const [a, b] = await Promise.all([
      generate(model, [prompts[0]], opts),
      generate(model, [prompts[1]], opts),
    ]);
    expect(a[0].tokens).toEqual(one[0].tokens);
    expect(b[0].tokens).toEqual(two[0].tokens);
  });

  it('top-k 1 is greedy', async () => {
    const g = await generate(model, prompts, { maxNewTokens: 8, temperature: 0, eosTokenIds: [] });
    const k1 = await generate(model, prompts, {
      maxNewTokens: 8,
      temperature: 1.5,
      topK: 1,
      seed: 3,
      eosTokenIds: [],
    });
    expect(k1.map((c) => c.tokens)).toEqual(g.map((c) => c.tokens));
  });

  it('ends on EOS and on stop strings, rows finishing at different steps', async () => {
    const greedy = await generate(model, prompts, { maxNewTokens: 8, temperature: 0, eosTokenIds: [] });
    // make the 3rd greedy token of prompt 0 an end-of-sequence id
    const eosRun = await generate(model, prompts, {
      maxNewTokens: 8,
      temperature: 0,
      eosTokenIds: [greedy[0].tokens[2]],
    });
    expect(eosRun[0].finishReason).toBe('eos');
    expect(eosRun[0].tokens).toEqual(greedy[0].tokens.slice(0, 3));
    if (!greedy[1].tokens.slice(0, 8).includes(greedy[0].tokens[2])) {
      expect(eosRun[1].tokens).toEqual(greedy[1].tokens);
    }
    // stop strings are matched against the clean text (special tokens skipped), as verifiers see it
    const full = model.tokenizer.decode(greedy[1].tokens, { skipSpecialTokens: true });
    const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 2);
    const stopRun = await generate(model, [prompts[1]], {
      maxNewTokens: 8,
      temperature: 0,
      eosTokenIds: [],
      stop: [stop],
    });
    expect(stopRun[0].finishReason).toBe('stop');
    expect(stopRun[0].text).toBe(full.slice(0, full.indexOf(stop)));
  });

  it('reports bad options with the field', async () => {
    await expect(generate(model, [[]], { maxNewTokens: 4 })).rejects.toThrow(
      /generate_empty_prompt: prompts\[0\]/,
    );
    await expect(generate(model, prompts, { maxNewTokens: 0 })).rejects.toThrow(/maxNewTokens/);
  });
});
