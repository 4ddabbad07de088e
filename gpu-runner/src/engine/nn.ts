// Composite ops built from the primitives in ops.ts; their gradients come from the primitives'
// rules, so none of them needs a rule of its own.
import { EngineError, type Tensor } from './graph';
import {
  add,
  argMax,
  cast,
  concat,
  cos,
  cumsum,
  div,
  erf,
  exp,
  fill,
  gatherElements,
  less,
  log,
  logSoftmax,
  matmul,
  mul,
  neg,
  reciprocal,
  reduceMax,
  reduceMean,
  reduceMin,
  reduceSum,
  reshape,
  shapeOf,
  sigmoid,
  sin,
  slice,
  softmax,
  sqrt,
  squeeze,
  sub,
  topK,
  transposeLast,
  trilu,
  unsqueeze,
  where,
} from './ops';

export const silu = (x: Tensor): Tensor => mul(x, sigmoid(x));

/** GELU, exact (erf) form. */
export const gelu = (x: Tensor): Tensor => mul(mul(x, 0.5), add(erf(mul(x, Math.SQRT1_2)), 1));

/** x @ w (+ b); w is [in, out]. */
export function linear(x: Tensor, w: Tensor, b?: Tensor): Tensor {
  const y = matmul(x, w);
  return b ? add(y, b) : y;
}

/** RMSNorm over the last axis: x / sqrt(mean(x²) + eps) * weight. */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps = 1e-6): Tensor {
  const y = mul(x, reciprocal(sqrt(add(reduceMean(mul(x, x), [-1], true), eps))));
  return weight ? mul(y, weight) : y;
}

/** Softmax from primitives (exp / sum with the max subtracted); the fused Softmax op is tested against it. */
export function softmaxComposite(x: Tensor, axis = -1): Tensor {
  const e = exp(sub(x, reduceMax(x, [axis], true)));
  return div(e, reduceSum(e, [axis], true));
}

/** cos/sin tables for rotary embeddings at integer `positions` (any shape), last axis headDim. */
export function ropeTables(positions: Tensor, headDim: number, theta = 10000): { cos: Tensor; sin: Tensor } {
  if (headDim % 2 !== 0) throw new EngineError('engine.rope', `headDim must be even, got ${headDim}`);
  const dtype = 'float32';
  const half = headDim / 2;
  const invFreq = positions.graph.rootGraph.constant(
    dtype,
    [half],
    Array.from({ length: half }, (_, i) => 1 / theta ** ((2 * i) / headDim)),
  );
  const freqs = mul(unsqueeze(cast(positions, dtype), [-1]), invFreq);
  const emb = concat([freqs, freqs], -1);
  return { cos: cos(emb), sin: sin(emb) };
}

/** Rotary embedding, "rotate half" layout (Llama/Qwen): x·cos + rotate_half(x)·sin; x [..., seq, d],
 *  cos/sin broadcastable to it (e.g. [seq, d] or [batch, 1, seq, d]). */
export function rope(x: Tensor, cosT: Tensor, sinT: Tensor): Tensor {
  const d = x.shape[x.rank - 1];
  if (typeof d !== 'number') throw new EngineError('engine.rope', 'the head dim must be a fixed number');
  const x1 = slice(x, [0], [d / 2], [-1]);
  const x2 = slice(x, [d / 2], [d], [-1]);
  return add(mul(x, cosT), mul(concat([neg(x2), x1], -1), sinT));
}

export interface AttentionOptions {
  /** Additive bias broadcastable to [batch, 1, 1, seq, kv] (0 keep, large negative drop), e.g. padding. */
  bias?: Tensor;
  /** Skip the causal mask (cross attention). */
  causal?: boolean;
  scale?: number;
}

/** Builds an additive bias [batch, 1, 1, 1, kv] from a key padding mask [batch, kv] of 1 (keep) / 0 (pad). */
export function paddingBias(mask: Tensor, dtype: 'float32' | 'float64' = 'float32'): Tensor {
  const m = cast(mask, dtype);
  return reshape(mul(sub(1, m), -1e9), [mask.shape[0], 1, 1, 1, mask.shape[1]]);
}

/**
 * Causal scaled dot-product attention with grouped-query heads.
 * q [batch, heads, seq, d], k/v [batch, kvHeads, kv, d] with heads % kvHeads == 0 and kv ≥ seq
 * (a KV cache holds kv - seq earlier positions: query i sees keys j ≤ i + kv - seq).
 * Returns [batch, heads, seq, d]. K/V are never repeated: queries are grouped per kv head.
 */
export function causalAttention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  const [b, h, s, d] = q.shape;
  const hkv = k.shape[1];
  if (typeof h !== 'number' || typeof hkv !== 'number' || typeof d !== 'number' || h % hkv !== 0)
    throw new EngineError(
      'engine.attention',
      `heads (${h}) must be a fixed multiple of kv heads (${hkv}), head dim fixed`,
    );
  const rep = h / hkv;
  const scale = options.scale ?? 1 / Math.sqrt(d);
  // [b, hkv, rep, s, d] @ [b, hkv, 1, d, kv] → [b, hkv, rep, s, kv]
  const q5 = reshape(mul(q, scale), [b, hkv, rep, s, d]);
  const k5 = unsqueeze(k, [2]);
  const v5 = unsqueeze(v, [2]);
  let scores = matmul(q5, transposeLast(k5));
  if (options.causal !== false) {
    const sT = shapeOf(q, 2, 3);
    const kvT = shapeOf(k, 2, 3);
    const ones = fill(q.graph, [sT, kvT], 1, q.dtype);
    const keepMask = trilu(ones, false, squeeze(sub(kvT, sT), [0]));
    scores = add(scores, mul(sub(1, keepMask), -1e9));
  }
  if (options.bias) scores = add(scores, options.bias);
  const out = matmul(softmax(scores, -1), v5);
  return reshape(out, [b, h, s, d]);
}

/** log p(target) per position: logits [..., vocab], targets int64 [...] → [...]. */
export function tokenLogProbs(logits: Tensor, targets: Tensor): Tensor {
  return squeeze(gatherElements(logSoftmax(logits, -1), unsqueeze(targets, [-1]), -1), [-1]);
}

/** Entropy of softmax(logits) over the last axis: [..., vocab] → [...]. */
export function entropy(logits: Tensor): Tensor {
  const lp = logSoftmax(logits, -1);
  return neg(reduceSum(mul(exp(lp), lp), [-1], false));
}

/** Mean cross-entropy of logits [..., vocab] against int64 targets [...]. */
export function crossEntropy(logits: Tensor, targets: Tensor): Tensor {
  return neg(reduceMean(tokenLogProbs(logits, targets), undefined, false));
}

/** Mean squared error over all elements. */
export function mseLoss(pred: Tensor, target: Tensor): Tensor {
  const d = sub(pred, target);
  return reduceMean(mul(d, d), undefined, false);
}

export interface SampleOptions {
  /** Uniform (0, 1) numbers shaped like the logits (e.g. `randomUniform`). */
  uniform: Tensor;
  /** Softmax temperature: a number or a per-row tensor [batch, 1]. Use argMax for greedy. */
  temperature?: Tensor | number;
  /** Keep only the k most likely tokens. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (number or [batch, 1]). */
  topP?: Tensor | number;
}

/** Draws one token id per row from logits [batch, vocab] inside the graph (Gumbel-max over the
 *  temperature-scaled, top-k/top-p-masked logits), so decoding never returns logits to JS. */
export function sampleTokens(logits: Tensor, options: SampleOptions): Tensor {
  const NEG = -1e30;
  let scaled =
    options.temperature === undefined || options.temperature === 1
      ? logits
      : div(logits, options.temperature);
  if (options.topK !== undefined) {
    const kth = reduceMin(topK(scaled, options.topK, -1).values, [-1], true);
    scaled = where(less(scaled, kth), NEG, scaled);
  }
  if (options.topP !== undefined) {
    const sorted = topK(scaled, shapeOf(scaled, -1), -1).values;
    const before = cumsum(softmax(sorted, -1), -1, { exclusive: true });
    const threshold = reduceMin(where(less(before, options.topP), sorted, -NEG), [-1], true);
    scaled = where(less(scaled, threshold), NEG, scaled);
  }
  const gumbel = neg(log(neg(log(options.uniform))));
  return argMax(add(scaled, gumbel), -1, false);
}
