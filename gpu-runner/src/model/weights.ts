// Checkpoint tensors ↔ graph layout. PyTorch Linear stores [out, in]; the graphs multiply x @ W
// with W as [in, out], so Linear weights are transposed once at load (and back at export).
import type { DecoderConfig } from './config';
import { LORA_TARGETS, modulePath, weightShapes } from './decoder';
import { type CheckpointTensors, halfToFloat32, SafetensorsError } from './safetensors';

export type WeightMap = Map<string, Float32Array>;

/** Weights as kept in memory: Float32Array, or Uint16Array holding fp16 bits (frozen weights of a
 *  half-precision checkpoint, fed to the graphs as float16 and cast to float32 inside them). */
export type WeightData = Float32Array | Uint16Array;
export type StoredWeightMap = Map<string, WeightData>;

/** `checkpoint`: frozen weights in the checkpoint's precision (BF16/F16 → fp16 bits); `float32`: widened. */
export type WeightPrecision = 'checkpoint' | 'float32';

export function widen(data: WeightData): Float32Array {
  return data instanceof Float32Array ? data : halfToFloat32(data);
}

export function transpose2d<T extends WeightData>(data: T, rows: number, cols: number): T {
  const out = new (data.constructor as new (n: number) => T)(data.length);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    for (let c0 = 0; c0 < cols; c0 += B) {
      const r1 = Math.min(rows, r0 + B);
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = data[r * cols + c];
    }
  }
  return out;
}

export function isLinearWeight(name: string): boolean {
  return name === 'lm_head.weight' || LORA_TARGETS.some((m) => name.endsWith(`.${m}.weight`));
}

/** Reads every decoder weight from the checkpoint in graph layout; a tied head becomes a transposed
 *  copy, except when the embedding is kept in fp16: the graphs then read the head from it. */
export function loadGraphWeights(
  ck: CheckpointTensors,
  cfg: DecoderConfig,
  precision: WeightPrecision = 'float32',
): StoredWeightMap {
  const out: StoredWeightMap = new Map();
  const shapes = weightShapes(cfg, null);
  for (const [name, shape] of shapes) {
    if (name === 'lm_head.weight' && (cfg.tieWordEmbeddings || !ck.has(name))) continue;
    if (!ck.has(name)) {
      throw new SafetensorsError(
        'checkpoint_missing_tensor',
        name,
        `the ${cfg.architecture} decoder needs it; is config.json right?`,
      );
    }
    const t = precision === 'float32' ? ck.read(name) : ck.readStored(name);
    const hfShape = isLinearWeight(name) ? [shape[1], shape[0]] : shape;
    if (t.shape.join(',') !== hfShape.join(',')) {
      throw new SafetensorsError(
        'checkpoint_shape',
        name,
        `shape [${t.shape}] does not match config.json ([${hfShape}])`,
      );
    }
    out.set(name, isLinearWeight(name) ? transpose2d(t.data, hfShape[0], hfShape[1]) : t.data);
  }
  const embed = out.get('model.embed_tokens.weight')!;
  if (!out.has('lm_head.weight')) {
    if (!cfg.tieWordEmbeddings) {
      throw new SafetensorsError(
        'checkpoint_missing_tensor',
        'lm_head.weight',
        'untied model without an lm_head',
      );
    }
    if (embed instanceof Float32Array)
      out.set('lm_head.weight', transpose2d(embed, cfg.vocabSize, cfg.hiddenSize));
  }
  return out;
}

/** Graph-layout weights back to checkpoint tensors (HF names and [out, in] layout). */
export function toCheckpointTensors(
  weights: WeightMap,
  cfg: DecoderConfig,
): Record<string, { shape: number[]; data: Float32Array }> {
  const shapes = weightShapes(cfg, null);
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, shape] of shapes) {
    if (name === 'lm_head.weight' && cfg.tieWordEmbeddings) continue;
    const data = weights.get(name);
    if (!data) continue;
    out[name] = isLinearWeight(name)
      ? { shape: [shape[1], shape[0]], data: transpose2d(data, shape[0], shape[1]) }
      : { shape, data };
  }
  return out;
}

export { modulePath };
