// Real-size checkpoints with random weights, for benchmarks and the GPU check (no download): the
// shapes of Qwen2.5-0.5B and Qwen2.5-1.5B (config.json as the Hub has it, BF16 safetensors) with
// the tiny Qwen2 tokenizer files (token-id work only needs the ids).
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TensorToWrite, writeSafetensors } from '../src/model/safetensors';

export type CheckpointShape = '0.5b' | '1.5b';

const SHAPES: Record<CheckpointShape, { H: number; I: number; L: number; nH: number; nKV: number }> = {
  '0.5b': { H: 896, I: 4864, L: 24, nH: 14, nKV: 2 },
  '1.5b': { H: 1536, I: 8960, L: 28, nH: 12, nKV: 2 },
};
const VOCAB = 151936;
const TINY = join(import.meta.dirname, '..', 'models', 'tiny-qwen2');

/** Writes (once: an existing folder is reused) a Qwen2.5-shaped checkpoint; returns the folder and its weight bytes. */
export function writeRandomCheckpoint(
  dir: string,
  shape: CheckpointShape,
  o: { layers?: number; seed?: number } = {},
): { dir: string; weightBytes: number; params: number } {
  const s = SHAPES[shape];
  const L = o.layers ?? s.L;
  const hd = s.H / s.nH;
  const tensors: [string, number[], number, number][] = [
    ['model.embed_tokens.weight', [VOCAB, s.H], 0.05, 0],
  ];
  tensors.push(['model.norm.weight', [s.H], 0.05, 1]);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    tensors.push(
      [`${p}.input_layernorm.weight`, [s.H], 0.05, 1],
      [`${p}.post_attention_layernorm.weight`, [s.H], 0.05, 1],
      [`${p}.self_attn.q_proj.weight`, [s.nH * hd, s.H], 1 / Math.sqrt(s.H), 0],
      [`${p}.self_attn.q_proj.bias`, [s.nH * hd], 0.05, 0],
      [`${p}.self_attn.k_proj.weight`, [s.nKV * hd, s.H], 1 / Math.sqrt(s.H), 0],
      [`${p}.self_attn.k_proj.bias`, [s.nKV * hd], 0.05, 0],
      [`${p}.self_attn.v_proj.weight`, [s.nKV * hd, s.H], 1 / Math.sqrt(s.H), 0],
      [`${p}.self_attn.v_proj.bias`, [s.nKV * hd], 0.05, 0],
      [`${p}.self_attn.o_proj.weight`, [s.H, s.nH * hd], 1 / Math.sqrt(s.nH * hd), 0],
      [`${p}.mlp.gate_proj.weight`, [s.I, s.H], 1 / Math.sqrt(s.H), 0],
      [`${p}.mlp.up_proj.weight`, [s.I, s.H], 1 / Math.sqrt(s.H), 0],
      [`${p}.mlp.down_proj.weight`, [s.H, s.I], 1 / Math.sqrt(s.I), 0],
    );
  }
  const params = tensors.reduce((n, [, sh]) => n + sh.reduce((a, b) => a * b, 1), 0);
  const weightBytes = params * 2;
  if (existsSync(join(dir, 'model.safetensors'))) return { dir, weightBytes, params };
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      hidden_size: s.H,
      intermediate_size: s.I,
      num_hidden_layers: L,
      num_attention_heads: s.nH,
      num_key_value_heads: s.nKV,
      hidden_act: 'silu',
      max_position_embeddings: 32768,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000,
      rope_scaling: null,
      tie_word_embeddings: true,
      use_sliding_window: false,
      vocab_size: VOCAB,
      torch_dtype: 'bfloat16',
      bos_token_id: 3000,
      eos_token_id: 3000,
    }),
  );
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    copyFileSync(join(TINY, f), join(dir, f));
  }
  let state = (o.seed ?? 12345) >>> 0;
  const out: Record<string, TensorToWrite> = {};
  for (const [name, shape, scale, mean] of tensors) {
    const a = new Float32Array(shape.reduce((x, y) => x * y, 1));
    for (let i = 0; i < a.length; i++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      a[i] = mean + (state / 4294967296 - 0.5) * 2 * scale;
    }
    out[name] = { shape, data: a, dtype: 'BF16' };
  }
  writeSafetensors(join(dir, 'model.safetensors'), out);
  return { dir, weightBytes, params };
}
