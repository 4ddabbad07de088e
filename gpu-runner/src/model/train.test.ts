// Training graphs (LoRA and full fine-tuning) on a memorization task, and LoRA adapters in PEFT's
// format: save → load round trip, merge, checkpoint export, and the adapter math checked against
// the plain-TypeScript reference reading the saved PEFT tensors directly.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as op from '../engine';
import { createEngine, type Engine } from '../engine';
import { generate } from '../rollout/generate';
import { CausalLM, type LossHook, type ScoredSequence } from './model';
import { referenceLogits } from './reference';
import { openCheckpointTensors, readSafetensorsHeader } from './safetensors';

const MODELS = join(import.meta.dirname, '..', '..', 'models');
const tmp = () => mkdtempSync(join(tmpdir(), 'train-'));

/** mean negative log-likelihood over the scored tokens */
const nll: LossHook = ({ logp, mask }) => ({
  loss: op.div(
    op.neg(op.reduceSum(op.mul(logp, mask), undefined, false)),
    op.reduceSum(mask, undefined, false),
  ),
  metrics: { tokens: op.reduceSum(mask, undefined, false) },
});

let engine: Engine;
beforeAll(async () => {
  engine = await createEngine();
});
afterAll(async () => {
  await engine.close();
});

function task(model: CausalLM): { prompt: number[]; answer: number[]; seq: ScoredSequence } {
  const tok = model.tokenizer;
  const prompt = tok.encode(tok.applyChatTemplate([{ role: 'user', content: 'What is 12 + 35?' }]));
  const answer = tok.encode('The answer is 47.');
  return { prompt, answer, seq: { tokens: [...prompt, ...answer], start: prompt.length } };
}

describe('LoRA fine-tuning (tiny-qwen3)', () => {
  let model: CausalLM;
  let data: ReturnType<typeof task>;
  let adapterDir: string;
  const lora = {
    rank: 4,
    alpha: 8,
    dropout: 0.1,
    targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const,
  };

  beforeAll(async () => {
    model = await CausalLM.load(join(MODELS, 'tiny-qwen3'), {
      engine,
      lora: { ...lora, targets: [...lora.targets], seed: 1 },
    });
    data = task(model);
  });
  afterAll(async () => {
    await model.close();
  });

  it('starts as a no-op (B = 0) and drives the loss down until the answer is memorized', async () => {
    const base = await CausalLM.load(join(MODELS, 'tiny-qwen3'), { engine });
    const [before] = await base.score([data.seq]);
    const [withAdapter] = await model.score([data.seq]);
    expect(Array.from(withAdapter.logp)).toEqual(Array.from(before.logp));
    await base.close();

    const trainer = await model.trainer({ mode: 'lora', loss: nll, optimizer: { lr: 1e-2, weightDecay: 0 } });
    const losses: number[] = [];
    for (let i = 0; i < 25; i++) {
      const r = await trainer.step([data.seq]);
      losses.push(r.loss);
      expect(r.metrics.tokens[0]).toBe(data.answer.length);
    }
    expect(losses[0]).toBeGreaterThan(5);
    expect(losses[24]).toBeLessThan(0.05);
    const [g] = await generate(model, [data.prompt], { maxNewTokens: data.answer.length, temperature: 0 });
    expect(g.text).toBe('The answer is 47.');
  });

  it('saves a PEFT adapter that loads back to identical scores', async () => {
    adapterDir = join(tmp(), 'adapter');
    await model.saveAdapter(adapterDir, 'gpu-runner/models/tiny-qwen3');
    const cfg = JSON.parse(readFileSync(join(adapterDir, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0.1,
    });
    const h = readSafetensorsHeader(join(adapterDir, 'adapter_model.safetensors'));
    expect(h.tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')?.shape).toEqual([
      4, 64,
    ]);
    expect(h.tensors.get('base_model.model.model.layers.1.mlp.down_proj.lora_B.weight')?.shape).toEqual([
      64, 4,
    ]);
    expect(h.tensors.size).toBe(2 * 7 * 2);

    const reloaded = await CausalLM.load(join(MODELS, 'tiny-qwen3'), { engine, adapterPath: adapterDir });
    const [a] = await model.score([data.seq]);
    const [b] = await reloaded.score([data.seq]);
    expect(Array.from(b.logp)).toEqual(Array.from(a.logp));
    await reloaded.close();
  });

  it('adapter logits match the reference applying the saved PEFT tensors', async () => {
    const raw = JSON.parse(readFileSync(join(MODELS, 'tiny-qwen3/config.json'), 'utf8'));
    const base = openCheckpointTensors(join(MODELS, 'tiny-qwen3'));
    const ad = openCheckpointTensors(adapterDir, 'adapter_model');
    const want = referenceLogits(raw, (n) => (base.has(n) ? base.read(n).data : undefined), data.seq.tokens, {
      scale: 8 / 4,
      rank: 4,
      tensor: (k) => (ad.has(k) ? ad.read(k).data : undefined),
    });
    const got = await model.fullLogits(data.seq.tokens);
    let d = 0;
    for (let i = 0; i < want.length; i++) d = Math.max(d, Math.abs(want[i] - got[i]));
    expect(d).toBeLessThan(1e-4);
  });

  it('merges into the base weights and exports a checkpoint that reloads with the same scores', async () => {
    const [adapterScores] = await model.score([data.seq]);
    const merged = await CausalLM.load(join(MODELS, 'tiny-qwen3'), { engine, adapterPath: adapterDir });
    await merged.mergeAdapter();
    expect(merged.loraConfig).toBeNull();
    const [m] = await merged.score([data.seq]);
    const out = join(tmp(), 'merged');
    await merged.saveCheckpoint(out);
    await merged.close();
    expect(openCheckpointTensors(out).has('lm_head.weight')).toBe(false); // tied, as the base
    const exported = await CausalLM.load(out, { engine });
    const [e] = await exported.score([data.seq]);
    await exported.close();
    for (let i = 0; i < m.logp.length; i++) {
      expect(Math.abs(m.logp[i] - adapterScores.logp[i])).toBeLessThan(1e-4);
      expect(Math.abs(e.logp[i] - m.logp[i])).toBeLessThan(1e-5);
    }
  });

  it('applies LoRA dropout in training only, with a fresh mask each step', async () => {
    const m = await CausalLM.load(join(MODELS, 'tiny-qwen3'), { engine, adapterPath: adapterDir });
    const frozen = await m.trainer({ mode: 'lora', loss: nll, optimizer: { lr: 0, weightDecay: 0 } });
    const l1 = (await frozen.step([data.seq])).loss;
    const l2 = (await frozen.step([data.seq])).loss;
    expect(l1).not.toBe(l2);
    // scoring (no dropout) is unaffected by the training graph's masks
    const [s1] = await m.score([data.seq]);
    const [s2] = await m.score([data.seq]);
    expect(Array.from(s1.logp)).toEqual(Array.from(s2.logp));
    await m.close();
  });

  it('resumes from a saved adapter + optimizer state exactly where it left off', async () => {
    const noDrop = { ...lora, targets: [...lora.targets], dropout: 0, seed: 9 };
    const a = await CausalLM.load(join(MODELS, 'tiny-qwen3'), { engine, lora: noDrop });
    const opt = { lr: 5e-3, weightDecay: 0.01 };
    const ta = await a.trainer({ mode: 'lora', loss: nll, optimizer: opt });
    for (let i = 0; i < 3; i++) await ta.step([data.seq]);
    const dir = join(tmp(), 'ckpt');
    await a.saveAdapter(dir);
    const saved = await ta.optimizerState();
    expect(saved['optimizer.step'][0]).toBe(4);
    const cont = [(await ta.step([data.seq])).loss, (await ta.step([data.seq])).loss];
    await a.close();

    const b = await CausalLM.load(join(MODELS, 'tiny-qwen3'), { engine, adapterPath: dir });
    const tb = await b.trainer({ mode: 'lora', loss: nll, optimizer: opt });
    await tb.restoreOptimizerState(saved);
    const resumed = [(await tb.step([data.seq])).loss, (await tb.step([data.seq])).loss];
    await b.close();
    expect(resumed).toEqual(cont);
  });

  it('rejects adapters that do not fit, with the field', async () => {
    await expect(
      CausalLM.load(join(MODELS, 'tiny-llama'), { engine, adapterPath: adapterDir }),
    ).rejects.toThrow(/adapter_shape/);
    await expect(model.trainer({ mode: 'full', loss: nll, optimizer: { lr: 1e-3 } })).rejects.toThrow(
      /train_adapter_present/,
    );
  });
});

describe('full fine-tuning', () => {
  it.each(['llama', 'qwen2'] as const)(
    'memorizes on tiny-%s and exports the trained weights',
    async (fam) => {
      const model = await CausalLM.load(join(MODELS, `tiny-${fam}`), { engine });
      const data = task(model);
      const trainer = await model.trainer({
        mode: 'full',
        loss: nll,
        optimizer: { lr: 3e-3, weightDecay: 0, maxGradNorm: 1 },
      });
      const losses: number[] = [];
      for (let i = 0; i < 25; i++) losses.push((await trainer.step([data.seq])).loss);
      expect(losses[24]).toBeLessThan(losses[0] * 0.1);
      const [g] = await generate(model, [data.prompt], { maxNewTokens: data.answer.length, temperature: 0 });
      expect(g.text).toBe('The answer is 47.');
      const out = join(tmp(), 'full');
      await model.saveCheckpoint(out, { dtype: 'BF16' });
      const [a] = await model.score([data.seq]);
      await model.close();
      const again = await CausalLM.load(out, { engine });
      const [b] = await again.score([data.seq]);
      await again.close();
      // bf16 export: close, not equal
      for (let i = 0; i < a.logp.length; i++) expect(Math.abs(a.logp[i] - b.logp[i])).toBeLessThan(0.15);
    },
  );
});
