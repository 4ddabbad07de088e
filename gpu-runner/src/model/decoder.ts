// The decoder as engine graph ops, nanoGPT-style: one function per block, flags from the config
// for what differs between Qwen2 (q/k/v bias), Qwen3 (q/k RMSNorm, free head_dim) and Llama
// (llama3 rope scaling, untied head). Weights are graph inputs in "graph layout" (Linear weights
// transposed to [in, out]) fed from the engine's runtime state, so every graph family shares one
// copy of the weights and full fine-tuning just rebinds them.
import type { Dim, Graph, Tensor } from '../engine';
import * as op from '../engine';
import { type DecoderConfig, ropeInvFreq } from './config';

export type LoraTarget = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';
export const LORA_TARGETS: readonly LoraTarget[] = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'down_proj',
];

export interface LoraSpec {
  rank: number;
  alpha: number;
  targets: readonly LoraTarget[];
  /** alpha / sqrt(rank) instead of alpha / rank */
  useRslora?: boolean;
}

/** How a weight tensor enters the graph: `param` (trainable), `input` (frozen, fed from state),
 *  `half` (frozen, fed from state as float16 and cast to float32 inside the graph). */
export type WeightRole = 'param' | 'input' | 'half';

export interface DecoderBuild {
  graph: Graph;
  cfg: DecoderConfig;
  lora: LoraSpec | null;
  /** role of each weight name; default 'input' */
  role: (name: string) => WeightRole;
  /** lm head reads the tied embedding through a transpose (train graphs) instead of `lm_head.weight` */
  headFromEmbedding: boolean;
  /** dropout rate on the LoRA input (train graphs only) */
  loraDropout?: number;
}

export interface BlockInputs {
  ids: Tensor; // int64 [batch, seq]
  positions: Tensor; // int64 [batch, seq]
  /** additive attention bias [batch, 1, seq, total] (0 = attend, -1e9 = masked) */
  bias: Tensor;
  /** per layer: past key/value [batch, kv_heads, past, head_dim], or null (no cache) */
  past: { key: Tensor; value: Tensor }[] | null;
  /** the name (or size) of the sequence axis of `ids`: 'seq' unless the caller runs inside a Loop body (1) */
  seqDim?: Dim;
}

export function projShape(cfg: DecoderConfig, module: LoraTarget): [number, number] {
  const q = cfg.numHeads * cfg.headDim;
  const kv = cfg.numKvHeads * cfg.headDim;
  const shapes: Record<LoraTarget, [number, number]> = {
    q_proj: [cfg.hiddenSize, q],
    k_proj: [cfg.hiddenSize, kv],
    v_proj: [cfg.hiddenSize, kv],
    o_proj: [q, cfg.hiddenSize],
    gate_proj: [cfg.hiddenSize, cfg.intermediateSize],
    up_proj: [cfg.hiddenSize, cfg.intermediateSize],
    down_proj: [cfg.intermediateSize, cfg.hiddenSize],
  };
  return shapes[module];
}

export function modulePath(layer: number, module: LoraTarget): string {
  const block = module.endsWith('_proj') && ['q', 'k', 'v', 'o'].includes(module[0]) ? 'self_attn' : 'mlp';
  return `model.layers.${layer}.${block}.${module}`;
}

/** Every weight the decoder reads, with its graph-layout shape (Linear weights are [in, out]). */
export function weightShapes(cfg: DecoderConfig, lora: LoraSpec | null): Map<string, number[]> {
  const m = new Map<string, number[]>();
  m.set('model.embed_tokens.weight', [cfg.vocabSize, cfg.hiddenSize]);
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    m.set(`${p}.input_layernorm.weight`, [cfg.hiddenSize]);
    m.set(`${p}.post_attention_layernorm.weight`, [cfg.hiddenSize]);
    for (const mod of LORA_TARGETS) {
      const [i, o] = projShape(cfg, mod);
      m.set(`${modulePath(l, mod)}.weight`, [i, o]);
      if (lora?.targets.includes(mod)) {
        m.set(`${modulePath(l, mod)}.lora_A`, [i, lora.rank]);
        m.set(`${modulePath(l, mod)}.lora_B`, [lora.rank, o]);
      }
    }
    if (cfg.qkvBias) {
      for (const mod of ['q_proj', 'k_proj', 'v_proj'] as const)
        m.set(`${modulePath(l, mod)}.bias`, [projShape(cfg, mod)[1]]);
    }
    if (cfg.oBias) m.set(`${modulePath(l, 'o_proj')}.bias`, [cfg.hiddenSize]);
    if (cfg.qkNorm) {
      m.set(`${p}.self_attn.q_norm.weight`, [cfg.headDim]);
      m.set(`${p}.self_attn.k_norm.weight`, [cfg.headDim]);
    }
  }
  m.set('model.norm.weight', [cfg.hiddenSize]);
  m.set('lm_head.weight', [cfg.hiddenSize, cfg.vocabSize]);
  return m;
}

/** The weight as the graph receives it: float32, or float16 for `half` weights (see `weight`). */
function storedWeight(b: DecoderBuild, name: string, shape: number[]): Tensor {
  const cache = storedCache.get(b) ?? new Map<string, Tensor>();
  storedCache.set(b, cache);
  let t = cache.get(name);
  if (!t) {
    const role = b.role(name);
    t =
      role === 'param'
        ? b.graph.param(name, 'float32', shape)
        : b.graph.input(name, role === 'half' ? 'float16' : 'float32', shape);
    cache.set(name, t);
  }
  return t;
}
const storedCache = new WeakMap<DecoderBuild, Map<string, Tensor>>();

/** The weight in float32: a half weight gets one Cast, in the root graph (a Loop body reuses it). */
function weight(b: DecoderBuild, name: string, shape: number[]): Tensor {
  const cache = weightCache.get(b) ?? new Map<string, Tensor>();
  weightCache.set(b, cache);
  let t = cache.get(name);
  if (!t) {
    t = op.cast(storedWeight(b, name, shape), 'float32');
    cache.set(name, t);
  }
  return t;
}
const weightCache = new WeakMap<DecoderBuild, Map<string, Tensor>>();

export function rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
  const ms = op.reduceMean(op.mul(x, x), [-1], true);
  return op.mul(op.mul(x, op.reciprocal(op.sqrt(op.add(ms, eps)))), w);
}

/** x @ W (+ b) (+ LoRA: scale * dropout(x) @ A @ B) */
function linear(b: DecoderBuild, x: Tensor, layer: number, module: LoraTarget, bias: boolean): Tensor {
  const [i, o] = projShape(b.cfg, module);
  const path = modulePath(layer, module);
  let y = op.matmul(x, weight(b, `${path}.weight`, [i, o]));
  if (bias) y = op.add(y, weight(b, `${path}.bias`, [o]));
  if (b.lora?.targets.includes(module)) {
    const r = b.lora.rank;
    const scale = b.lora.useRslora ? b.lora.alpha / Math.sqrt(r) : b.lora.alpha / r;
    let xin = x;
    if (b.loraDropout && b.loraDropout > 0)
      xin = dropout(b, xin, i, b.loraDropout, layer * 8 + LORA_TARGETS.indexOf(module));
    const a = op.matmul(xin, weight(b, `${path}.lora_A`, [i, r]));
    y = op.add(y, op.mul(op.matmul(a, weight(b, `${path}.lora_B`, [r, o])), scale));
  }
  return y;
}

/** Inverted dropout with the engine's hash-based uniform numbers (one stream per LoRA module),
 *  reseeded by a `dropout_seed` input every step. Off the gradient path by construction. */
function dropout(b: DecoderBuild, x: Tensor, inDim: number, rate: number, site: number): Tensor {
  const g = b.graph;
  const seed =
    g.rootGraph.inputs.find((t) => t.name === 'dropout_seed') ?? g.input('dropout_seed', 'int64', []);
  const u = op.randomUniform(g, ['batch', 'seq', inDim], seed, { stream: site });
  const keep = op.cast(op.greaterOrEqual(u, rate), x.dtype);
  return op.mul(x, op.mul(keep, 1 / (1 - rate)));
}

function rotateHalf(x: Tensor, hd: number): Tensor {
  const x1 = op.slice(x, [0], [hd / 2], [-1]);
  const x2 = op.slice(x, [hd / 2], [hd], [-1]);
  return op.concat([op.neg(x2), x1], -1);
}

/** cos/sin [batch, 1, seq, head_dim] from integer positions */
function ropeTables(b: DecoderBuild, positions: Tensor): { cos: Tensor; sin: Tensor } {
  const inv = b.graph.constant('float32', [b.cfg.headDim / 2], ropeInvFreq(b.cfg));
  const f = op.mul(op.unsqueeze(op.cast(positions, 'float32'), [-1]), inv);
  const both = op.unsqueeze(op.concat([f, f], -1), [1]);
  return { cos: op.cos(both), sin: op.sin(both) };
}

function applyRope(x: Tensor, t: { cos: Tensor; sin: Tensor }, hd: number): Tensor {
  return op.add(op.mul(x, t.cos), op.mul(rotateHalf(x, hd), t.sin));
}

/** [batch, seq, heads*hd] → [batch, heads, seq, hd], with the optional per-head RMSNorm */
function heads(x: Tensor, n: number, hd: number, norm: Tensor | null, eps: number, seq: Dim): Tensor {
  let h = op.reshape(x, ['batch', seq, n, hd]);
  if (norm) h = rmsNorm(h, norm, eps);
  return op.transpose(h, [0, 2, 1, 3]);
}

function attention(
  b: DecoderBuild,
  x: Tensor,
  layer: number,
  rope: { cos: Tensor; sin: Tensor },
  bias: Tensor,
  past: { key: Tensor; value: Tensor } | null,
  seq: Dim,
): { out: Tensor; key: Tensor; value: Tensor } {
  const { cfg } = b;
  const hd = cfg.headDim;
  const g = cfg.numHeads / cfg.numKvHeads;
  const p = `model.layers.${layer}.self_attn`;
  const qn = cfg.qkNorm ? weight(b, `${p}.q_norm.weight`, [hd]) : null;
  const kn = cfg.qkNorm ? weight(b, `${p}.k_norm.weight`, [hd]) : null;
  const q = applyRope(
    heads(linear(b, x, layer, 'q_proj', cfg.qkvBias), cfg.numHeads, hd, qn, cfg.rmsNormEps, seq),
    rope,
    hd,
  );
  let k = applyRope(
    heads(linear(b, x, layer, 'k_proj', cfg.qkvBias), cfg.numKvHeads, hd, kn, cfg.rmsNormEps, seq),
    rope,
    hd,
  );
  let v = heads(linear(b, x, layer, 'v_proj', cfg.qkvBias), cfg.numKvHeads, hd, null, cfg.rmsNormEps, seq);
  if (past) {
    k = op.concat([past.key, k], 2);
    v = op.concat([past.value, v], 2);
  }
  // GQA without copying K/V: group the query heads that share a KV head, broadcast over the group
  const q5 = op.reshape(q, ['batch', cfg.numKvHeads, g, seq, hd]);
  const k5 = op.unsqueeze(k, [2]);
  const v5 = op.unsqueeze(v, [2]);
  let s = op.mul(op.matmul(q5, op.transposeLast(k5)), 1 / Math.sqrt(hd));
  s = op.add(s, op.unsqueeze(bias, [2]));
  const o = op.matmul(op.softmax(s, -1), v5);
  const merged = op.reshape(op.transpose(op.reshape(o, ['batch', cfg.numHeads, seq, hd]), [0, 2, 1, 3]), [
    'batch',
    seq,
    cfg.numHeads * hd,
  ]);
  return { out: linear(b, merged, layer, 'o_proj', cfg.oBias), key: k, value: v };
}

function mlp(b: DecoderBuild, x: Tensor, layer: number): Tensor {
  const gate = linear(b, x, layer, 'gate_proj', false);
  const up = linear(b, x, layer, 'up_proj', false);
  return linear(b, op.mul(op.mul(gate, op.sigmoid(gate)), up), layer, 'down_proj', false);
}

function block(
  b: DecoderBuild,
  h: Tensor,
  layer: number,
  rope: { cos: Tensor; sin: Tensor },
  bias: Tensor,
  past: { key: Tensor; value: Tensor } | null,
  seq: Dim,
): { h: Tensor; key: Tensor; value: Tensor } {
  const { cfg } = b;
  const p = `model.layers.${layer}`;
  const a = attention(
    b,
    rmsNorm(h, weight(b, `${p}.input_layernorm.weight`, [cfg.hiddenSize]), cfg.rmsNormEps),
    layer,
    rope,
    bias,
    past,
    seq,
  );
  const h1 = op.add(h, a.out);
  const m = mlp(
    b,
    rmsNorm(h1, weight(b, `${p}.post_attention_layernorm.weight`, [cfg.hiddenSize]), cfg.rmsNormEps),
    layer,
  );
  return { h: op.add(h1, m), key: a.key, value: a.value };
}

/** Final hidden states [batch, seq, hidden] and the per-layer K/V (including the past). */
export function decoderHidden(
  b: DecoderBuild,
  inp: BlockInputs,
): { hidden: Tensor; kv: { key: Tensor; value: Tensor }[] } {
  const { cfg } = b;
  // rows are gathered before the Cast: a half embedding is never widened as a whole here
  const embed = storedWeight(b, 'model.embed_tokens.weight', [cfg.vocabSize, cfg.hiddenSize]);
  let h = op.cast(op.gather(embed, inp.ids, 0), 'float32');
  const rope = ropeTables(b, inp.positions);
  const kv: { key: Tensor; value: Tensor }[] = [];
  for (let l = 0; l < cfg.numLayers; l++) {
    const r = block(b, h, l, rope, inp.bias, inp.past ? inp.past[l] : null, inp.seqDim ?? 'seq');
    h = r.h;
    kv.push({ key: r.key, value: r.value });
  }
  return { hidden: rmsNorm(h, weight(b, 'model.norm.weight', [cfg.hiddenSize]), cfg.rmsNormEps), kv };
}

/** Logits of hidden states [..., hidden] → [..., vocab] */
export function lmHead(b: DecoderBuild, hidden: Tensor): Tensor {
  const { cfg } = b;
  const embedName = 'model.embed_tokens.weight';
  if (cfg.tieWordEmbeddings && b.role(embedName) === 'half') {
    // a half embedding has no transposed copy: logits = (E · hiddenᵀ)ᵀ, transposing only activations
    const e = weight(b, embedName, [cfg.vocabSize, cfg.hiddenSize]);
    return op.transposeLast(op.matmul(e, op.transposeLast(hidden)));
  }
  if (cfg.tieWordEmbeddings && b.headFromEmbedding) {
    return op.matmul(
      hidden,
      op.transposeLast(weight(b, 'model.embed_tokens.weight', [cfg.vocabSize, cfg.hiddenSize])),
    );
  }
  return op.matmul(hidden, weight(b, 'lm_head.weight', [cfg.hiddenSize, cfg.vocabSize]));
}
