// One decoder config for the three supported families, read from a checkpoint's config.json.
// Field names mirror config.json; the flags say what differs between families.
export type DecoderFamily = 'qwen2' | 'qwen3' | 'llama';

export interface RopeScaling {
  type: 'llama3' | 'linear';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface DecoderConfig {
  family: DecoderFamily;
  architecture: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  /** bias on q/k/v projections (Qwen2 always; Llama/Qwen3 when attention_bias) */
  qkvBias: boolean;
  /** bias on o_proj (Llama/Qwen3 attention_bias) */
  oBias: boolean;
  /** per-head RMSNorm on q and k before RoPE (Qwen3) */
  qkNorm: boolean;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

export class ModelConfigError extends Error {
  constructor(
    readonly code: string,
    readonly field: string,
    message: string,
  ) {
    super(`${code}: config.json ${field}: ${message}`);
  }
}

const FAMILIES: Record<string, DecoderFamily> = {
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
  LlamaForCausalLM: 'llama',
};

function num(raw: Record<string, unknown>, key: string, fallback?: number): number {
  const v = raw[key];
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ModelConfigError('config_missing_field', key, 'required number is missing');
  }
  throw new ModelConfigError('config_bad_field', key, `expected a number, got ${JSON.stringify(v)}`);
}

function ids(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

/** Parses config.json (and optionally generation_config.json, whose eos ids win). */
export function parseDecoderConfig(
  raw: Record<string, unknown>,
  generation?: Record<string, unknown>,
): DecoderConfig {
  const archs = raw.architectures;
  const architecture = Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : '';
  const family = FAMILIES[architecture];
  if (!family) {
    throw new ModelConfigError(
      'config_unsupported_architecture',
      'architectures',
      `${JSON.stringify(archs)} is not supported; use one of ${Object.keys(FAMILIES).join(', ')}`,
    );
  }
  if (raw.use_sliding_window === true) {
    throw new ModelConfigError(
      'config_unsupported',
      'use_sliding_window',
      'sliding-window attention is not supported; set it to false',
    );
  }
  if (raw.mlp_bias === true) {
    throw new ModelConfigError('config_unsupported', 'mlp_bias', 'MLP biases are not supported');
  }
  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu') {
    throw new ModelConfigError(
      'config_unsupported',
      'hidden_act',
      `only silu is supported, got ${JSON.stringify(act)}`,
    );
  }
  const hiddenSize = num(raw, 'hidden_size');
  const numHeads = num(raw, 'num_attention_heads');
  const numKvHeads = num(raw, 'num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new ModelConfigError(
      'config_bad_field',
      'num_key_value_heads',
      `${numKvHeads} does not divide num_attention_heads ${numHeads}`,
    );
  }
  let ropeScaling: RopeScaling | null = null;
  const rs = raw.rope_scaling as Record<string, unknown> | null | undefined;
  if (rs) {
    const type = (rs.rope_type ?? rs.type) as string;
    if (type === 'llama3' || type === 'linear') {
      ropeScaling = {
        type,
        factor: num(rs, 'factor'),
        lowFreqFactor: num(rs, 'low_freq_factor', 1),
        highFreqFactor: num(rs, 'high_freq_factor', 4),
        originalMaxPositionEmbeddings: num(rs, 'original_max_position_embeddings', 8192),
      };
    } else if (type !== 'default') {
      throw new ModelConfigError(
        'config_unsupported',
        'rope_scaling.rope_type',
        `${type} is not supported (llama3, linear, default are)`,
      );
    }
  }
  const attentionBias = raw.attention_bias === true;
  const eos = ids(generation?.eos_token_id);
  return {
    family,
    architecture,
    vocabSize: num(raw, 'vocab_size'),
    hiddenSize,
    intermediateSize: num(raw, 'intermediate_size'),
    numLayers: num(raw, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim: num(raw, 'head_dim', hiddenSize / numHeads),
    rmsNormEps: num(raw, 'rms_norm_eps', 1e-6),
    ropeTheta: num(raw, 'rope_theta', 10000),
    ropeScaling,
    maxPositionEmbeddings: num(raw, 'max_position_embeddings', 32768),
    qkvBias: family === 'qwen2' ? true : attentionBias,
    oBias: family === 'qwen2' ? false : attentionBias,
    qkNorm: family === 'qwen3',
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    bosTokenId: typeof raw.bos_token_id === 'number' ? raw.bos_token_id : null,
    eosTokenIds: eos.length > 0 ? eos : ids(raw.eos_token_id),
  };
}

/** HF `rotate_half` RoPE inverse frequencies, with llama3 / linear scaling applied. */
export function ropeInvFreq(cfg: DecoderConfig): Float32Array {
  const half = cfg.headDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    let f = 1 / cfg.ropeTheta ** ((2 * i) / cfg.headDim);
    const s = cfg.ropeScaling;
    if (s?.type === 'linear') f /= s.factor;
    else if (s?.type === 'llama3') {
      const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
      const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) f /= s.factor;
      else if (wavelen >= highWavelen) {
        const smooth =
          (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) /
          (s.highFreqFactor - s.lowFreqFactor);
        f = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
    out[i] = f;
  }
  return out;
}
