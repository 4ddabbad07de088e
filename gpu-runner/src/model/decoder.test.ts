// The graph decoder against the plain-TypeScript reference (reference.ts), and KV-cache decoding
// against full recomputation, on the tiny Qwen2, Qwen3 and Llama checkpoints.
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../engine';
import { generate } from '../rollout/generate';
import { argmax } from '../rollout/sampling';
import { CausalLM } from './model';
import { referenceLogits } from './reference';
import { openCheckpointTensors, writeSafetensors } from './safetensors';

const MODELS = join(import.meta.dirname, '..', '..', 'models');
const FAMILIES = ['qwen2', 'qwen3', 'llama'] as const;

let engine: Engine;
beforeAll(async () => {
  engine = await createEngine();
});
afterAll(async () => {
  await engine.close();
});

function refFor(fam: string) {
  const dir = join(MODELS, `tiny-${fam}`);
  const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const ck = openCheckpointTensors(dir);
  return (ids: number[]) => referenceLogits(raw, (n) => (ck.has(n) ? ck.read(n).data : undefined), ids);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

describe.each(FAMILIES)('tiny-%s', (fam) => {
  let model: CausalLM;
  let prompts: number[][];
  beforeAll(async () => {
    model = await CausalLM.load(join(MODELS, `tiny-${fam}`), { engine });
    const tok = model.tokenizer;
    prompts = [
      tok.encode(tok.applyChatTemplate([{ role: 'user', content: 'What is 12 + 35?' }])),
      tok.encode('The quick brown fox'),
      tok.encode(tok.applyChatTemplate([{ role: 'user', content: 'Hi' }])),
    ];
  });
  afterAll(async () => {
    await model.close();
  });

  it('logits match the TypeScript reference to 1e-4', async () => {
    const ids = prompts[0];
    const got = await model.fullLogits(ids);
    const want = refFor(fam)(ids);
    // logits are O(10): the bound is tight relative to their scale
    expect(Math.max(...Array.from(want, Math.abs))).toBeGreaterThan(1);
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-4);
  });

  it('KV-cache greedy decoding equals greedy full recomputation', async () => {
    const steps = 10;
    const [cached] = await generate(model, [prompts[1]], {
      maxNewTokens: steps,
      temperature: 0,
      eosTokenIds: [],
    });
    const seq = [...prompts[1]];
    const V = model.config.vocabSize;
    for (let s = 0; s < steps; s++) {
      const logits = await model.fullLogits(seq);
      seq.push(argmax(logits.subarray((seq.length - 1) * V, seq.length * V), model.vocabLimit));
    }
    expect(cached.tokens).toEqual(seq.slice(prompts[1].length));
    expect(cached.finishReason).toBe('length');
  });

  it('a ragged left-padded batch decodes each prompt as if it were alone', async () => {
    const opts = { maxNewTokens: 6, temperature: 0, eosTokenIds: [] };
    const batched = await generate(model, prompts, opts);
    for (let p = 0; p < prompts.length; p++) {
      const [alone] = await generate(model, [prompts[p]], opts);
      expect(batched[p].prompt).toBe(p);
      expect(batched[p].tokens).toEqual(alone.tokens);
    }
  });

  it('scores tokens with log-probs and entropies of softmax(logits / T)', async () => {
    const tokens = [...prompts[2], ...prompts[1]];
    const start = prompts[2].length;
    const T = 0.7;
    const [s] = await model.score(
      [
        { tokens, start },
        { tokens: prompts[1], start: 1 },
      ],
      { temperature: T },
    );
    const ref = refFor(fam)(tokens);
    const V = model.config.vocabSize;
    expect(s.logp.length).toBe(tokens.length - start);
    for (let i = start; i < tokens.length; i++) {
      const row = Array.from(ref.subarray((i - 1) * V, i * V), (x) => x / T);
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
      const ent = -row.reduce((a, x) => a + Math.exp(x - lse) * (x - lse), 0);
      expect(Math.abs(s.logp[i - start] - (row[tokens[i]] - lse))).toBeLessThan(1e-4);
      expect(Math.abs(s.entropy[i - start] - ent)).toBeLessThan(1e-4);
    }
  });
});

describe('checkpoint layouts real models ship', () => {
  it('loads a sharded bf16 checkpoint (index.json) and scores like the f32 original', async () => {
    const src = join(MODELS, 'tiny-qwen3');
    const dir = mkdtempSync(join(tmpdir(), 'sharded-'));
    for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']) {
      copyFileSync(join(src, f), join(dir, f));
    }
    const ck = openCheckpointTensors(src);
    const names = ck.names().sort();
    const weightMap: Record<string, string> = {};
    const shards = [names.slice(0, names.length / 2), names.slice(names.length / 2)];
    shards.forEach((part, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      const tensors = Object.fromEntries(part.map((n) => [n, { ...ck.read(n), dtype: 'BF16' as const }]));
      writeSafetensors(join(dir, file), tensors);
      for (const n of part) weightMap[n] = file;
    });
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    );
    const f32 = await CausalLM.load(src, { engine });
    const bf16 = await CausalLM.load(dir, { engine });
    const tokens = f32.tokenizer.encode('What is 12 + 35? The answer is 47.');
    const [a] = await f32.score([{ tokens, start: 1 }]);
    const [b] = await bf16.score([{ tokens, start: 1 }]);
    await f32.close();
    await bf16.close();
    let d = 0;
    for (let i = 0; i < a.logp.length; i++) d = Math.max(d, Math.abs(a.logp[i] - b.logp[i]));
    // bf16 keeps 8 mantissa bits: close, and not identical (the conversion really happened)
    expect(d).toBeGreaterThan(0);
    expect(d).toBeLessThan(0.2);
  });
});
