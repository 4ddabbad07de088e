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

function num(raw: Record<string, unknown>, key: string, fallback?: number, within = ''): number {
  const v = raw[key];
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ModelConfigError('config_missing_field', `${within}${key}`, 'required number is missing');
  }
  throw new ModelConfigError(
    'config_bad_field',
    `${within}${key}`,
    `expected a number, got ${JSON.stringify(v)}`,
  );
}

function ids(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

/**
 * Keys that change the decoder's math when they hold anything but their neutral value. A checkpoint
 * that sets one is refused by name rather than run with the wrong math (a later transformers may
 * add more; those are caught only when listed here).
 */
const NEUTRAL_KEYS: Record<string, (v: unknown) => boolean> = {
  partial_rotary_factor: (v) => v === 1 || v === 1.0,
  attn_logit_softcapping: (v) => v === null,
  final_logit_softcapping: (v) => v === null,
  query_pre_attn_scalar: (v) => v === null,
  embedding_multiplier: (v) => v === 1,
  logits_scaling: (v) => v === 1,
  residual_multiplier: (v) => v === 1,
  attention_multiplier: (v) => v === null,
  num_experts: (v) => v === null || v === 0,
  num_local_experts: (v) => v === null || v === 0,
  no_rope_layers: (v) => v === null || (Array.isArray(v) && v.every((x) => x === 1)),
  layer_types: (v) => Array.isArray(v) && v.every((x) => x === 'full_attention'),
  attention_dropout: (v) => v === 0 || v === null,
  mrope_section: (v) => v === null,
};

function rejectMathKeys(raw: Record<string, unknown>): void {
  for (const [key, neutral] of Object.entries(NEUTRAL_KEYS)) {
    if (!(key in raw) || raw[key] === undefined) continue;
    if (!neutral(raw[key])) {
      throw new ModelConfigError(
        'config_unsupported',
        key,
        `${JSON.stringify(raw[key])} changes the decoder's math and is not supported by this runner`,
      );
    }
  }
}

const ROPE_TYPES = ['default', 'linear', 'llama3'] as const;
/** keys each rope type may carry; anything else in the rope dict is refused by name */
const ROPE_KEYS: Record<(typeof ROPE_TYPES)[number], readonly string[]> = {
  default: [],
  linear: ['factor'],
  llama3: ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'],
};

/**
 * RoPE from either layout: transformers v4 (`rope_theta` + `rope_scaling`) or v5 (`rope_parameters`
 * holding `rope_type`, `rope_theta` and the scaling fields). Types whose math this decoder does not
 * implement (yarn, dynamic, longrope, ...) and per-layer-type dicts are load errors naming the key.
 */
function parseRope(raw: Record<string, unknown>): { ropeTheta: number; ropeScaling: RopeScaling | null } {
  const v5 = raw.rope_parameters;
  let field: string;
  let rope: Record<string, unknown>;
  let ropeTheta: number;
  if (v5 !== undefined && v5 !== null) {
    field = 'rope_parameters';
    if (typeof v5 !== 'object' || Array.isArray(v5)) {
      throw new ModelConfigError('config_bad_field', field, `expected an object, got ${JSON.stringify(v5)}`);
    }
    rope = v5 as Record<string, unknown>;
    if (!('rope_type' in rope) && !('type' in rope) && !('rope_theta' in rope)) {
      // {"full_attention": {...}, "sliding_attention": {...}}: one rope per layer type
      throw new ModelConfigError(
        'config_unsupported',
        field,
        `per-layer-type RoPE (${Object.keys(rope).join(', ')}) is not supported`,
      );
    }
    ropeTheta = num(rope, 'rope_theta', num(raw, 'rope_theta', 10000), 'rope_parameters.');
    if ('rope_theta' in raw && raw.rope_theta !== ropeTheta) {
      throw new ModelConfigError(
        'config_bad_field',
        'rope_theta',
        `${raw.rope_theta} disagrees with rope_parameters.rope_theta ${ropeTheta}; keep one`,
      );
    }
    if (raw.rope_scaling !== undefined && raw.rope_scaling !== null) {
      throw new ModelConfigError(
        'config_bad_field',
        'rope_scaling',
        'set alongside rope_parameters (transformers v5); keep rope_parameters only',
      );
    }
  } else {
    field = 'rope_scaling';
    rope = (raw.rope_scaling ?? {}) as Record<string, unknown>;
    ropeTheta = num(raw, 'rope_theta', 10000);
  }
  const type = String(rope.rope_type ?? rope.type ?? 'default');
  if (!(ROPE_TYPES as readonly string[]).includes(type)) {
    throw new ModelConfigError(
      'config_unsupported',
      `${field}.rope_type`,
      `${type} is not supported (${ROPE_TYPES.join(', ')} are); its frequencies differ from these, so the checkpoint cannot be run with another`,
    );
  }
  const t = type as (typeof ROPE_TYPES)[number];
  const known = new Set(['rope_type', 'type', 'rope_theta', ...ROPE_KEYS[t]]);
  for (const [k, v] of Object.entries(rope)) {
    if (known.has(k)) continue;
    if (k === 'partial_rotary_factor' && v === 1) continue;
    // transformers fills these for every type; they only matter for types refused above
    if (k === 'original_max_position_embeddings' && t !== 'llama3') continue;
    throw new ModelConfigError(
      'config_unsupported',
      `${field}.${k}`,
      `${JSON.stringify(v)} is not a ${t} RoPE setting this runner implements`,
    );
  }
  if (t === 'default') return { ropeTheta, ropeScaling: null };
  return {
    ropeTheta,
    ropeScaling: {
      type: t,
      factor: num(rope, 'factor', undefined, `${field}.`),
      lowFreqFactor: num(rope, 'low_freq_factor', 1, `${field}.`),
      highFreqFactor: num(rope, 'high_freq_factor', 4, `${field}.`),
      originalMaxPositionEmbeddings: num(rope, 'original_max_position_embeddings', 8192, `${field}.`),
    },
  };
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
  rejectMathKeys(raw);
  const { ropeTheta, ropeScaling } = parseRope(raw);
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
    ropeTheta,
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
