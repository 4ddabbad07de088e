// Half-precision frozen weights on real onnxruntime-node: the bf16 → fp16 conversion bit for bit,
// logits and a LoRA train step of the fp16 path against the float32 path, and what the state holds.
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as op from '../engine';
import { createEngine, type Engine } from '../engine';
import { generate } from '../rollout/generate';
import { LORA_TARGETS } from './decoder';
import { CausalLM, type LossHook, type ScoredSequence } from './model';
import {
  bf16ToHalfInPlace,
  floatToHalf,
  openCheckpointTensors,
  readSafetensorsHeader,
  readTensorStored,
  writeSafetensors,
} from './safetensors';

const MODELS = join(import.meta.dirname, '..', '..', 'models');

let engine: Engine;
beforeAll(async () => {
  engine = await createEngine();
});
afterAll(async () => {
  await engine.close();
});

/** the tiny checkpoint `fam` rewritten with every tensor in `dtype` */
function rewrite(fam: string, dtype: 'BF16' | 'F16', edit?: (name: string, data: Float32Array) => void) {
  const src = join(MODELS, `tiny-${fam}`);
  const dir = mkdtempSync(join(tmpdir(), `half-${fam}-`));
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'])
    copyFileSync(join(src, f), join(dir, f));
  const ck = openCheckpointTensors(src);
  const tensors = Object.fromEntries(
    ck.names().map((n) => {
      const t = ck.read(n);
      edit?.(n, t.data);
      return [n, { ...t, dtype }];
    }),
  );
  writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return dir;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bf16Value = (bits: number) => {
  u32[0] = bits << 16;
  return f32[0];
};

describe('bf16 → fp16 conversion', () => {
  it('matches round-to-nearest fp16 of the bf16 value for all 65,536 bit patterns', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const finite = all.filter((b) => Math.abs(bf16Value(b)) <= 65504);
    const h = Uint16Array.from(finite);
    const { ok, flushed } = bf16ToHalfInPlace(h);
    expect(ok).toBe(true);
    let wrong = 0;
    finite.forEach((b, i) => {
      if (h[i] !== floatToHalf(bf16Value(b))) wrong++;
    });
    expect(wrong).toBe(0);
    // bf16 exponents below 2^-25 have no fp16 value but ±0 (and 2^-25 itself ties to even 0)
    expect(flushed).toBeGreaterThan(0);
    // a tensor with one value beyond fp16 is left untouched and reported
    for (const big of [65536, -1e6, Number.POSITIVE_INFINITY, Number.NaN]) {
      u32[0] = 0;
      f32[0] = big;
      const t = Uint16Array.of(0x3f80, u32[0] >>> 16);
      expect(bf16ToHalfInPlace(t).ok).toBe(false);
      expect(t[0]).toBe(0x3f80);
    }
  });

  it('keeps a bf16 tensor beyond fp16 in float32, the rest in fp16', () => {
    const dir = rewrite('qwen2', 'BF16', (n, d) => {
      if (n === 'model.norm.weight') d[0] = 1e5;
    });
    const h = readSafetensorsHeader(join(dir, 'model.safetensors'));
    const norm = readTensorStored(h, 'model.norm.weight');
    expect(norm.dtype).toBe('float32');
    expect(norm.data[0]).toBe(99840); // 1e5 in bf16
    const embed = readTensorStored(h, 'model.embed_tokens.weight');
    expect(embed.dtype).toBe('float16');
    expect(embed.data).toBeInstanceOf(Uint16Array);
  });
});

function maxRel(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

const TOKENS = [3000, 17, 250, 1999, 42, 7, 812, 64, 3001, 5, 600, 2047];

describe.each(['qwen2', 'llama'] as const)('tiny-%s in half precision', (fam) => {
  // qwen2 ties its head to the embedding (read as (E·hᵀ)ᵀ in fp16), llama has its own lm_head
  it('bf16 file: fp16 logits equal the float32 path up to float32 rounding', async () => {
    const dir = rewrite(fam, 'BF16');
    const half = await CausalLM.load(dir, { engine });
    const wide = await CausalLM.load(dir, { engine, weightPrecision: 'float32' });
    expect(half.halfWeights.has('model.embed_tokens.weight')).toBe(true);
    expect(half.halfWeights.has('model.layers.0.mlp.down_proj.weight')).toBe(true);
    expect(wide.halfWeights.size).toBe(0);
    const a = await half.fullLogits(TOKENS);
    const b = await wide.fullLogits(TOKENS);
    await half.close();
    await wide.close();
    // every bf16 weight in fp16's normal range is exactly representable in fp16, so the weights
    // are identical; what differs is summation order (the tied head's transposed product)
    expect(maxRel(a, b)).toBeLessThan(1e-5);
  });

  it('f16 file: logits match the original float32 checkpoint within fp16 rounding', async () => {
    const dir = rewrite(fam, 'F16');
    const half = await CausalLM.load(dir, { engine });
    const ref = await CausalLM.load(join(MODELS, `tiny-${fam}`), { engine });
    const a = await half.fullLogits(TOKENS);
    const b = await ref.fullLogits(TOKENS);
    await half.close();
    await ref.close();
    // fp16 keeps 11 significant bits: each weight within 2^-12 ≈ 2.4e-4 relative; a few layers of
    // dot products grow that to ~1e-3 of the largest logit. 1e-2 leaves room; bf16 (2^-9) would not.
    const rel = maxRel(a, b);
    expect(rel).toBeGreaterThan(0);
    expect(rel).toBeLessThan(1e-2);
  });
});

describe('generation on a half-precision checkpoint', () => {
  it('samples in the graph and in JS like the float32 path (same seed, same tokens)', async () => {
    const dir = rewrite('qwen2', 'BF16');
    const half = await CausalLM.load(dir, { engine });
    const wide = await CausalLM.load(dir, { engine, weightPrecision: 'float32' });
    const prompt = half.tokenizer.encode('What is 12 + 35?');
    for (const sampler of ['graph', 'js'] as const) {
      const o = { maxNewTokens: 12, n: 3, temperature: 1, topP: 0.95, seed: 7, sampler };
      const a = await generate(half, [prompt], o);
      const b = await generate(wide, [prompt], o);
      expect(a).toHaveLength(3);
      expect(a[0].tokens.length).toBeGreaterThan(0);
      expect(a.map((c) => c.tokens)).toEqual(b.map((c) => c.tokens));
    }
    await half.close();
    await wide.close();
  });
});

const nll: LossHook = ({ logp, mask }) => ({
  loss: op.div(
    op.neg(op.reduceSum(op.mul(logp, mask), undefined, false)),
    op.reduceSum(mask, undefined, false),
  ),
});

describe('LoRA and full fine-tuning on a half-precision checkpoint', () => {
  const seqs: ScoredSequence[] = [
    { tokens: TOKENS, start: 4 },
    { tokens: TOKENS.slice(0, 8).reverse(), start: 2 },
  ];
  const lora = { rank: 4, alpha: 8, dropout: 0, targets: [...LORA_TARGETS], seed: 3 };

  it('a LoRA step gives the float32 path loss, gradient norm and adapter update', async () => {
    const dir = rewrite('qwen2', 'BF16');
    const half = await CausalLM.load(dir, { engine, lora });
    const wide = await CausalLM.load(dir, { engine, lora, weightPrecision: 'float32' });
    const opt = {
      mode: 'lora' as const,
      loss: nll,
      optimizer: { lr: 1e-2, weightDecay: 0, maxGradNorm: 1e6 },
    };
    const th = await half.trainer(opt);
    const tw = await wide.trainer(opt);
    for (let step = 0; step < 3; step++) {
      const a = await th.step(seqs);
      const b = await tw.step(seqs);
      expect(Math.abs(a.loss - b.loss) / Math.abs(b.loss)).toBeLessThan(1e-5);
      expect(Math.abs(a.gradNorm! - b.gradNorm!) / b.gradNorm!).toBeLessThan(1e-4);
    }
    const wa = await half.weights();
    const wb = await wide.weights();
    for (const name of ['model.layers.1.mlp.down_proj.lora_A', 'model.layers.0.self_attn.q_proj.lora_B'])
      expect(maxRel(wa.get(name)!, wb.get(name)!)).toBeLessThan(1e-4);
    // the adapter stays float32, the frozen weights fp16
    expect([...half.halfWeights].some((n) => n.includes('lora'))).toBe(false);
    await half.close();
    await wide.close();
  });

  it('full fine-tuning widens the weights to float32 master weights and trains', async () => {
    const dir = rewrite('qwen2', 'BF16');
    const model = await CausalLM.load(dir, { engine });
    const before = await model.fullLogits(TOKENS);
    const trainer = await model.trainer({ mode: 'full', loss: nll, optimizer: { lr: 1e-3, weightDecay: 0 } });
    expect(model.halfWeights.size).toBe(0);
    // widening is exact: the model computes what it did before the switch
    expect(maxRel(await model.fullLogits(TOKENS), before)).toBeLessThan(1e-5);
    const l0 = (await trainer.step(seqs)).loss;
    let l = l0;
    for (let i = 0; i < 5; i++) l = (await trainer.step(seqs)).loss;
    expect(l).toBeLessThan(l0);
    await model.close();
  });

  it('merging an adapter keeps the base weights in fp16', async () => {
    const dir = rewrite('qwen2', 'BF16');
    const model = await CausalLM.load(dir, { engine, lora });
    const trainer = await model.trainer({ mode: 'lora', loss: nll, optimizer: { lr: 1e-2 } });
    await trainer.step(seqs);
    await trainer.step(seqs);
    const adapted = await model.fullLogits(TOKENS);
    await model.mergeAdapter();
    expect(model.halfWeights.has('model.layers.0.mlp.up_proj.weight')).toBe(true);
    // the merged weight is rounded to fp16 once: within fp16 rounding of the adapted model
    expect(maxRel(await model.fullLogits(TOKENS), adapted)).toBeLessThan(1e-2);
    await model.close();
  });
});
