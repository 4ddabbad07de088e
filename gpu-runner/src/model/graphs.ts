// The graph families built on the decoder: decode (prefill and one-token steps with a KV cache),
// score (per-token log-probs and entropy of whole sequences) and KV row gathering (sharing one
// prompt's prefill across its samples, dropping finished rows). The train family is in train.ts.

import * as op from '../engine';
import { type BuiltModel, buildModel, Graph, type Tensor } from '../engine';
import type { DecoderConfig } from './config';
import { type DecoderBuild, decoderHidden, type LoraSpec, lmHead, type WeightRole } from './decoder';

export interface FamilyOptions {
  lora: LoraSpec | null;
  role?: (name: string) => WeightRole;
  /** the head reads the (tied) embedding through a transpose instead of the `lm_head.weight` copy */
  headFromEmbedding?: boolean;
  loraDropout?: number;
}

function newBuild(cfg: DecoderConfig, opts: FamilyOptions, name: string): DecoderBuild {
  return {
    graph: new Graph(name),
    cfg,
    lora: opts.lora,
    role: opts.role ?? (() => 'input'),
    headFromEmbedding: (opts.headFromEmbedding ?? false) && cfg.tieWordEmbeddings,
    loraDropout: opts.loraDropout ?? 0,
  };
}

export const pastKey = (l: number) => `past_key_${l}`;
export const pastValue = (l: number) => `past_value_${l}`;
export const presentKey = (l: number) => `present_key_${l}`;
export const presentValue = (l: number) => `present_value_${l}`;

/** Inputs: input_ids, position_ids [batch, seq]; attn_bias [batch, 1, seq, past+seq]; past K/V per layer
 *  (past may be 0 long for the prefill). Outputs: logits of the last position [batch, vocab], present K/V. */
export function buildDecodeGraph(cfg: DecoderConfig, opts: FamilyOptions): BuiltModel {
  const b = newBuild(cfg, opts, 'decode');
  const g = b.graph;
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const positions = g.input('position_ids', 'int64', ['batch', 'seq']);
  const bias = g.input('attn_bias', 'float32', ['batch', 1, 'seq', 'total']);
  const past = Array.from({ length: cfg.numLayers }, (_, l) => ({
    key: g.input(pastKey(l), 'float32', ['batch', cfg.numKvHeads, 'past', cfg.headDim]),
    value: g.input(pastValue(l), 'float32', ['batch', cfg.numKvHeads, 'past', cfg.headDim]),
  }));
  const { hidden, kv } = decoderHidden(b, { ids, positions, bias, past });
  const last = op.squeeze(op.slice(hidden, [-1], [Number.POSITIVE_INFINITY], [1]), [1]);
  const outputs: Record<string, Tensor> = { logits: lmHead(b, last) };
  kv.forEach((t, l) => {
    outputs[presentKey(l)] = t.key;
    outputs[presentValue(l)] = t.value;
  });
  return buildModel(g, outputs, `decode ${cfg.architecture}`);
}

/** Per-token log-probs of `targets` and entropies under softmax(logits * inv_temperature). */
export function tokenLogpEntropy(
  logits: Tensor,
  targets: Tensor,
  invTemperature: Tensor,
): { logp: Tensor; entropy: Tensor; logProbs: Tensor } {
  const z = op.mul(logits, invTemperature);
  const ls = op.logSoftmax(z, -1);
  const logp = op.squeeze(op.gatherElements(ls, op.unsqueeze(targets, [-1]), -1), [-1]);
  const entropy = op.neg(op.reduceSum(op.mul(op.exp(ls), ls), [-1], false));
  return { logp, entropy, logProbs: ls };
}

export interface ScoreTensors {
  build: DecoderBuild;
  ids: Tensor;
  positions: Tensor;
  bias: Tensor;
  targets: Tensor;
  invTemperature: Tensor;
  logp: Tensor;
  entropy: Tensor;
  /** log-softmax over the vocabulary [batch, seq, vocab] (only computed where a loss reads it) */
  logProbs: Tensor;
}

/** The forward part shared by score and train graphs. */
export function scoreTensors(cfg: DecoderConfig, opts: FamilyOptions, name: string): ScoreTensors {
  const b = newBuild(cfg, opts, name);
  const g = b.graph;
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const positions = g.input('position_ids', 'int64', ['batch', 'seq']);
  const bias = g.input('attn_bias', 'float32', ['batch', 1, 'seq', 'seq']);
  const targets = g.input('targets', 'int64', ['batch', 'seq']);
  const invTemperature = g.input('inv_temperature', 'float32', []);
  const { hidden } = decoderHidden(b, { ids, positions, bias, past: null });
  const { logp, entropy, logProbs } = tokenLogpEntropy(lmHead(b, hidden), targets, invTemperature);
  return { build: b, ids, positions, bias, targets, invTemperature, logp, entropy, logProbs };
}

export function buildScoreGraph(cfg: DecoderConfig, opts: FamilyOptions): BuiltModel {
  const s = scoreTensors(cfg, opts, 'score');
  return buildModel(s.build.graph, { logp: s.logp, entropy: s.entropy }, `score ${cfg.architecture}`);
}

/** Full logits [batch, seq, vocab] (tests and debugging). */
export function buildLogitsGraph(cfg: DecoderConfig, opts: FamilyOptions): BuiltModel {
  const b = newBuild(cfg, opts, 'logits');
  const g = b.graph;
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const positions = g.input('position_ids', 'int64', ['batch', 'seq']);
  const bias = g.input('attn_bias', 'float32', ['batch', 1, 'seq', 'seq']);
  const { hidden } = decoderHidden(b, { ids, positions, bias, past: null });
  return buildModel(g, { logits: lmHead(b, hidden) }, `logits ${cfg.architecture}`);
}

/** Picks rows of every layer's past K/V: out[i] = past[rows[i]] (bound back into the state). */
export function buildGatherRowsGraph(cfg: DecoderConfig): BuiltModel {
  const g = new Graph('gather_rows');
  const rows = g.input('rows', 'int64', ['rows']);
  const outputs: Record<string, Tensor> = {};
  for (let l = 0; l < cfg.numLayers; l++) {
    for (const [inName, outName] of [
      [pastKey(l), presentKey(l)],
      [pastValue(l), presentValue(l)],
    ]) {
      const t = g.input(inName, 'float32', ['batch', cfg.numKvHeads, 'past', cfg.headDim]);
      outputs[outName] = op.gather(t, rows, 0);
    }
  }
  return buildModel(g, outputs, 'gather kv rows');
}

export const MASKED = -1e9;

/**
 * Attention bias for a left-padded batch: row b attends to key j when j is a real token
 * (keyValid[b][j]) and j <= the query's absolute index. Shape [batch, 1, seq, total].
 */
export function attentionBias(keyValid: Uint8Array[], seq: number): Float32Array {
  const batch = keyValid.length;
  const total = keyValid[0]?.length ?? 0;
  const past = total - seq;
  const out = new Float32Array(batch * seq * total);
  for (let b = 0; b < batch; b++) {
    const valid = keyValid[b];
    for (let i = 0; i < seq; i++) {
      const row = (b * seq + i) * total;
      for (let j = 0; j < total; j++) out[row + j] = j <= past + i && valid[j] ? 0 : MASKED;
    }
  }
  return out;
}

export interface LoopDecodeOptions extends FamilyOptions {
  /** argmax instead of sampling */
  greedy: boolean;
  /** top-k fixed at build time (0 = off) */
  topK: number;
  /** ids at or above this are never produced (checkpoints pad the embedding) */
  vocabLimit: number;
}

/**
 * The whole generation in one run: prefill, then an ONNX Loop of one-token steps whose carried
 * state is the KV cache, so nothing crosses to JS until the end (what CUDA without IO binding
 * needs). Sampling is in-graph (engine `sampleTokens`, Gumbel-max on hash-based uniforms).
 * Inputs: the left-padded prefill (input_ids, position_ids, attn_bias), key_valid [batch, seq]
 * (1 = real token), next_position [batch], max_steps (Loop trips = max new tokens − 1), seed,
 * temperature, top_p, eos_ids [n], pad_id. Outputs: first [batch], rest [trips, batch]; a row
 * that produced an EOS id emits pad_id afterwards, and the Loop stops when every row has.
 */
export function buildLoopDecodeGraph(cfg: DecoderConfig, opts: LoopDecodeOptions): BuiltModel {
  const b = newBuild(cfg, opts, 'decode_loop');
  const g = b.graph;
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const positions = g.input('position_ids', 'int64', ['batch', 'seq']);
  const bias = g.input('attn_bias', 'float32', ['batch', 1, 'seq', 'seq']);
  const keyValid = g.input('key_valid', 'float32', ['batch', 'seq']);
  const nextPosition = g.input('next_position', 'int64', ['batch']);
  const maxSteps = g.input('max_steps', 'int64', []);
  const seed = g.input('seed', 'int64', []);
  const temperature = g.input('temperature', 'float32', []);
  const topP = g.input('top_p', 'float32', []);
  const eosIds = g.input('eos_ids', 'int64', ['eos']);
  const padId = g.input('pad_id', 'int64', []);
  const V = cfg.vocabSize;
  const vocabMask =
    opts.vocabLimit < V
      ? g.constant(
          'float32',
          [V],
          Float32Array.from({ length: V }, (_, i) => (i < opts.vocabLimit ? 0 : -1e30)),
        )
      : null;

  const pick = (logits: Tensor, step: Tensor): Tensor => {
    const masked = vocabMask ? op.add(logits, vocabMask) : logits;
    if (opts.greedy) return op.argMax(masked, -1, false);
    // a distinct uniform stream per (seed, step): seed·2^20 + step
    const stepSeed = op.add(op.mul(seed, 1 << 20), step);
    return op.sampleTokens(masked, {
      uniform: op.randomUniform(g, ['batch', V], stepSeed),
      temperature,
      topK: opts.topK > 0 ? opts.topK : undefined,
      topP,
    });
  };
  const isEos = (t: Tensor): Tensor =>
    op.greater(op.reduceMax(op.cast(op.equal(op.unsqueeze(t, [1]), eosIds), 'float32'), [1], false), 0);
  const anyRunning = (d: Tensor): Tensor => op.less(op.reduceMin(op.cast(d, 'float32'), undefined, false), 1);

  const pre = decoderHidden(b, { ids, positions, bias, past: null });
  const last = op.squeeze(op.slice(pre.hidden, [-1], [Number.POSITIVE_INFINITY], [1]), [1]);
  const first = pick(lmHead(b, last), g.scalar(0, 'int64'));
  const done0 = isEos(first);
  const kvShape = ['batch', cfg.numKvHeads, 'cache', cfg.headDim];
  const { scans } = op.loop({
    maxTrip: maxSteps,
    cond: anyRunning(done0),
    carried: [first, nextPosition, keyValid, done0, ...pre.kv.flatMap((t) => [t.key, t.value])],
    carriedShapes: [
      ['batch'],
      ['batch'],
      ['batch', 'cache'],
      ['batch'],
      ...pre.kv.flatMap(() => [kvShape, kvShape]),
    ],
    body: (iter, [tok, pos, valid, done, ...kv]) => {
      const valid2 = op.concat([valid, op.fill(g, ['batch', 1], 1)], 1);
      const stepBias = op.unsqueeze(op.mul(op.sub(1, valid2), MASKED), [1, 2]);
      const past = Array.from({ length: cfg.numLayers }, (_, l) => ({
        key: kv[2 * l],
        value: kv[2 * l + 1],
      }));
      const r = decoderHidden(b, {
        ids: op.unsqueeze(tok, [1]),
        positions: op.unsqueeze(pos, [1]),
        bias: stepBias,
        past,
        seqDim: 1,
      });
      const logits = lmHead(b, op.squeeze(r.hidden, [1]));
      const next = op.where(done, padId, pick(logits, op.add(iter, 1)));
      const done2 = op.or(done, isEos(next));
      return {
        cond: anyRunning(done2),
        carried: [next, op.add(pos, 1), valid2, done2, ...r.kv.flatMap((t) => [t.key, t.value])],
        scans: [next],
      };
    },
  });
  return buildModel(g, { first, rest: scans[0] }, `decode loop ${cfg.architecture}`);
}

/** How the decode-chunk graph picks tokens: ArgMax, inverse CDF over the vocabulary in id order,
 *  or inverse CDF over the TopK-sorted candidates (top-k and/or top-p). */
export type SampleMode = 'greedy' | 'full' | 'sorted';

export interface SampleInputs {
  /** one uniform in [0, 1) per row [batch] (from the row's seeded JS `Rng`) */
  uniform: Tensor;
  /** scalar float32 */
  temperature: Tensor;
  /** [1] int64: candidates kept by TopK (`sorted` mode; the vocabulary limit when top-k is off) */
  topK: Tensor;
  /** scalar float32 (1 = off) */
  topP: Tensor;
}

/**
 * Samples one token per row of `logits` [batch, vocab] as `sampleToken` (rollout/sampling.ts)
 * does: logits / temperature, top-k, then the nucleus (the most probable candidates whose mass
 * before them is < top_p), then the inverse CDF: the first candidate whose cumulative mass
 * exceeds u · (candidate mass). `vocabMask` [vocab] adds −1e30 to padded ids. Returns the token
 * ids [batch] and their log-probs under softmax(logits / temperature) over the whole vocabulary
 * (temperature 1 for greedy), the quantity the score graph computes.
 */
export function sampleHead(
  logits: Tensor,
  mode: SampleMode,
  inp: SampleInputs,
  vocabMask: Tensor | null,
  vocabLimit: number,
  candidates = SORT_CANDIDATES,
): { token: Tensor; logp: Tensor } {
  const masked = vocabMask ? op.add(logits, vocabMask) : logits;
  const scaled = mode === 'greedy' ? masked : op.div(masked, inp.temperature);
  const logProbs = op.logSoftmax(scaled, -1);
  const count = (cdf: Tensor): Tensor => {
    // candidates whose cumulative mass is <= u · total: the index of the first one above it
    const total = op.slice(cdf, [-1], [Number.POSITIVE_INFINITY], [1]);
    const target = op.mul(op.unsqueeze(inp.uniform, [1]), total);
    return op.cast(op.reduceSum(op.cast(op.lessOrEqual(cdf, target), 'float32'), [1], true), 'int64');
  };
  let token: Tensor;
  if (mode === 'greedy') token = op.argMax(masked, -1, false);
  else if (mode === 'full') {
    const cdf = op.cumsum(op.softmax(scaled, -1), -1);
    // u · total can round up to total: never past the first id where the CDF reaches its top
    token = op.squeeze(op.minimum(count(cdf), op.argMax(cdf, -1, true)), [1]);
  } else {
    const { probs, indices } = sortedCandidates(logProbs, inp, vocabLimit, candidates);
    const keep = op.less(op.cumsum(probs, -1, { exclusive: true }), inp.topP);
    const kept = op.where(keep, probs, 0);
    const n = op.cast(op.reduceSum(op.cast(keep, 'float32'), [1], true), 'int64');
    const j = op.minimum(count(op.cumsum(kept, -1)), op.sub(n, 1));
    token = op.squeeze(op.gatherElements(indices, j, -1), [1]);
  }
  const logp = op.squeeze(op.gatherElements(logProbs, op.unsqueeze(token, [1]), -1), [1]);
  return { token, logp };
}

/** Candidates the `sorted` head takes with a bounded TopK before falling back to a whole sort. */
export const SORT_CANDIDATES = 1024;

/**
 * The top-k candidates sorted by probability, normalized over the top-k set (over the whole
 * vocabulary when top-k is off), without sorting the vocabulary when it is not needed: a bounded
 * TopK over `cap` ids is exact when top-k <= cap, or when top-k is off and, in every row, those
 * ids already hold at least top_p of the mass (the nucleus ends inside them). Otherwise a Loop of
 * at most one trip (an ONNX If) sorts every id below top-k.
 */
function sortedCandidates(
  logProbs: Tensor,
  inp: SampleInputs,
  vocabLimit: number,
  cap: number,
): { probs: Tensor; indices: Tensor } {
  const bounded = op.lessOrEqual(inp.topK, cap); // [1]
  const fast = op.topK(logProbs, op.minimum(inp.topK, cap), -1);
  // log-probs are normalized over the vocabulary; renormalize over the top-k set when it is whole
  const fastProbs = op.where(bounded, op.softmax(fast.values, -1), op.exp(fast.values));
  const rowsFit = op.greaterOrEqual(op.reduceSum(fastProbs, [1], true), inp.topP);
  const allFit = op.greater(op.reduceMin(op.cast(rowsFit, 'float32'), undefined, false), 0.5);
  const exact = op.or(bounded, op.and(op.greaterOrEqual(inp.topK, vocabLimit), allFit));
  const { carried } = op.loop({
    maxTrip: 1,
    cond: op.squeeze(op.not(exact), [0]),
    carried: [fastProbs, fast.indices],
    carriedShapes: [
      ['batch', 'candidates'],
      ['batch', 'candidates'],
    ],
    body: (_iter, _carried, body) => {
      // an alias inside the body, so the sort runs only when the Loop does
      const [lp] = op.customOp('Identity', [logProbs], [{ dtype: 'float32', shape: logProbs.shape }], {
        graph: body,
      });
      const all = op.topK(lp, inp.topK, -1);
      return { carried: [op.softmax(all.values, -1), all.indices] };
    },
  });
  return { probs: carried[0], indices: carried[1] };
}

/** The sampling head alone on logits fed from JS (the distribution tests). Inputs: logits
 *  [batch, vocab], uniform [batch], temperature, top_k [1], top_p. Outputs: token, logp [batch]. */
export function buildSampleGraph(
  vocab: number,
  mode: SampleMode,
  vocabLimit = vocab,
  candidates = SORT_CANDIDATES,
): BuiltModel {
  const g = new Graph('sample');
  const logits = g.input('logits', 'float32', ['batch', vocab]);
  const inp = sampleInputs(g);
  const out = sampleHead(logits, mode, inp, vocabMaskConstant(g, vocab, vocabLimit), vocabLimit, candidates);
  return buildModel(g, { token: out.token, logp: out.logp }, `sample ${mode}`);
}

function sampleInputs(g: Graph, uniform?: Tensor): SampleInputs {
  return {
    uniform: uniform ?? g.input('uniform', 'float32', ['batch']),
    temperature: g.input('temperature', 'float32', []),
    topK: g.input('top_k', 'int64', [1]),
    topP: g.input('top_p', 'float32', []),
  };
}

function vocabMaskConstant(g: Graph, vocab: number, limit: number): Tensor | null {
  if (limit >= vocab) return null;
  return g.constant(
    'float32',
    [vocab],
    Float32Array.from({ length: vocab }, (_, i) => (i < limit ? 0 : -1e30)),
  );
}

export interface DecodeChunkOptions extends FamilyOptions {
  mode: SampleMode;
  /** decode steps unrolled in one run */
  steps: number;
  /** ids at or above this are never produced (checkpoints pad the embedding) */
  vocabLimit: number;
}

/**
 * `steps` one-token decode steps unrolled in one graph, sampling in-graph, the KV cache carried
 * from step to step. Inputs: tokens [batch] (the last sampled token of each row, not yet in the
 * cache), next_position [batch], key_valid [batch, past] (1 = a real key in the cache, 0 = pad),
 * uniforms [batch, steps] (the rows' seeded JS draws, one per step), temperature, top_k [1],
 * top_p, past K/V. Outputs: tokens_out and logp [batch, steps], present K/V (past + steps long;
 * the last sampled token is the next chunk's input).
 */
export function buildDecodeChunkGraph(cfg: DecoderConfig, opts: DecodeChunkOptions): BuiltModel {
  const b = newBuild(cfg, opts, `decode_chunk_${opts.mode}_${opts.steps}`);
  const g = b.graph;
  const tokensIn = g.input('tokens', 'int64', ['batch']);
  const nextPosition = g.input('next_position', 'int64', ['batch']);
  const keyValid = g.input('key_valid', 'float32', ['batch', 'past']);
  const uniforms = g.input('uniforms', 'float32', ['batch', opts.steps]);
  const inp = sampleInputs(g, uniforms);
  const vocabMask = vocabMaskConstant(g, cfg.vocabSize, opts.vocabLimit);
  let past = Array.from({ length: cfg.numLayers }, (_, l) => ({
    key: g.input(pastKey(l), 'float32', ['batch', cfg.numKvHeads, 'past', cfg.headDim]),
    value: g.input(pastValue(l), 'float32', ['batch', cfg.numKvHeads, 'past', cfg.headDim]),
  }));
  let tok = tokensIn;
  let pos = nextPosition;
  let valid = keyValid;
  const toks: Tensor[] = [];
  const logps: Tensor[] = [];
  for (let s = 0; s < opts.steps; s++) {
    valid = op.concat([valid, op.fill(g, ['batch', 1], 1)], 1);
    const r = decoderHidden(b, {
      ids: op.unsqueeze(tok, [1]),
      positions: op.unsqueeze(pos, [1]),
      bias: op.unsqueeze(op.mul(op.sub(1, valid), MASKED), [1, 2]),
      past,
      seqDim: 1,
    });
    const u = op.squeeze(op.slice(uniforms, [s], [s + 1], [1]), [1]);
    const picked = sampleHead(
      lmHead(b, op.squeeze(r.hidden, [1])),
      opts.mode,
      { ...inp, uniform: u },
      vocabMask,
      opts.vocabLimit,
    );
    tok = picked.token;
    pos = op.add(pos, 1);
    past = r.kv;
    toks.push(op.unsqueeze(tok, [1]));
    logps.push(op.unsqueeze(picked.logp, [1]));
  }
  const outputs: Record<string, Tensor> = {
    tokens_out: toks.length === 1 ? toks[0] : op.concat(toks, 1),
    logp: logps.length === 1 ? logps[0] : op.concat(logps, 1),
  };
  past.forEach((t, l) => {
    outputs[presentKey(l)] = t.key;
    outputs[presentValue(l)] = t.value;
  });
  return buildModel(g, outputs, `decode chunk ${cfg.architecture}`);
}
