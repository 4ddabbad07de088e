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
): { logp: Tensor; entropy: Tensor } {
  const z = op.mul(logits, invTemperature);
  const ls = op.logSoftmax(z, -1);
  const logp = op.squeeze(op.gatherElements(ls, op.unsqueeze(targets, [-1]), -1), [-1]);
  const entropy = op.neg(op.reduceSum(op.mul(op.exp(ls), ls), [-1], false));
  return { logp, entropy };
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
  const { logp, entropy } = tokenLogpEntropy(lmHead(b, hidden), targets, invTemperature);
  return { build: b, ids, positions, bias, targets, invTemperature, logp, entropy };
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
