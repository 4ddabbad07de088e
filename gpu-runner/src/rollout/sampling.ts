// Picking the next token from one row of logits: temperature, top-k, top-p (nucleus), greedy at
// temperature 0. Each sample has its own seeded generator, so results do not depend on batching.
import { Rng } from '../model/rng';

export interface SamplingOptions {
  /** 0 = greedy */
  temperature: number;
  /** 0 or >= vocab = off */
  topK: number;
  /** 1 = off */
  topP: number;
}

export const GREEDY: SamplingOptions = { temperature: 0, topK: 0, topP: 1 };

export function argmax(row: ArrayLike<number>, limit = row.length): number {
  let best = 0;
  for (let i = 1; i < limit; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** 3-way partition of ids[lo, hi) by p around `pivot`: [lo, lt) > pivot, [lt, gt) = pivot, [gt, hi) < pivot */
function partition(
  ids: Int32Array,
  p: Float64Array,
  lo: number,
  hi: number,
  pivot: number,
): [number, number] {
  let lt = lo;
  let i = lo;
  let gt = hi;
  while (i < gt) {
    const v = p[ids[i]];
    if (v > pivot) {
      const t = ids[lt];
      ids[lt++] = ids[i];
      ids[i++] = t;
    } else if (v < pivot) {
      const t = ids[--gt];
      ids[gt] = ids[i];
      ids[i] = t;
    } else i++;
  }
  return [lt, gt];
}

/** Reorders ids[0, n) so that ids[0, k) hold the k most probable tokens (quickselect, O(n)). */
function selectTopCount(ids: Int32Array, p: Float64Array, n: number, k: number): void {
  let lo = 0;
  let hi = n;
  while (hi - lo > 1) {
    const [lt, gt] = partition(ids, p, lo, hi, p[ids[lo + ((hi - lo) >> 1)]]);
    if (k <= lt) hi = lt;
    else if (k <= gt) return;
    else lo = gt;
  }
}

/** Reorders ids[0, n) and returns the smallest c such that ids[0, c) are the most probable
 *  tokens with total mass >= target (the nucleus), in O(n) expected time. */
function selectTopMass(ids: Int32Array, p: Float64Array, n: number, target: number): number {
  let lo = 0;
  let hi = n;
  let need = target;
  while (lo < hi) {
    const pivot = p[ids[lo + ((hi - lo) >> 1)]];
    const [lt, gt] = partition(ids, p, lo, hi, pivot);
    let mass = 0;
    for (let j = lo; j < lt; j++) mass += p[ids[j]];
    if (mass >= need && lt > lo) {
      hi = lt;
      continue;
    }
    need -= mass;
    const eq = gt - lt;
    if (eq * pivot >= need) return lt + Math.min(eq, Math.max(1, Math.ceil(need / pivot)));
    need -= eq * pivot;
    lo = gt;
  }
  return Math.max(1, lo);
}

/** The candidate set of top-k / top-p sampling and its unnormalized probabilities. */
export function candidates(
  row: ArrayLike<number>,
  opts: SamplingOptions,
  limit = row.length,
): { ids: Int32Array; p: Float64Array; n: number; z: number } {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < limit; i++) if (row[i] > max) max = row[i];
  const p = new Float64Array(limit);
  const inv = 1 / opts.temperature;
  for (let i = 0; i < limit; i++) p[i] = Math.exp((row[i] - max) * inv);
  const ids = new Int32Array(limit);
  for (let i = 0; i < limit; i++) ids[i] = i;
  let n = limit;
  if (opts.topK > 0 && opts.topK < limit) {
    selectTopCount(ids, p, n, opts.topK);
    n = opts.topK;
  }
  let z = 0;
  for (let j = 0; j < n; j++) z += p[ids[j]];
  if (opts.topP < 1) {
    n = selectTopMass(ids, p, n, opts.topP * z);
    z = 0;
    for (let j = 0; j < n; j++) z += p[ids[j]];
  }
  return { ids, p, n, z };
}

/** Samples one token id from `row` (logits over the vocabulary; entries >= `limit` are ignored). */
export function sampleToken(
  row: ArrayLike<number>,
  opts: SamplingOptions,
  rng: Rng,
  limit = row.length,
): number {
  if (opts.temperature <= 0) return argmax(row, limit);
  const { ids, p, n, z } = candidates(row, opts, limit);
  let u = rng.next() * z;
  for (let j = 0; j < n; j++) {
    u -= p[ids[j]];
    if (u < 0) return ids[j];
  }
  return ids[n - 1];
}

/** log softmax(row / temperature)[token] over ids below `limit` (temperature 1 when greedy):
 *  what the decode graph reports for an in-graph sample and the score graph computes. */
export function tokenLogProb(
  row: ArrayLike<number>,
  token: number,
  temperature: number,
  limit = row.length,
): number {
  const inv = temperature > 0 ? 1 / temperature : 1;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < limit; i++) if (row[i] > max) max = row[i];
  let z = 0;
  for (let i = 0; i < limit; i++) z += Math.exp((row[i] - max) * inv);
  return (row[token] - max) * inv - Math.log(z);
}

/** One generator per (seed, prompt index, sample index). */
export function sampleRng(seed: number, prompt: number, sample: number): Rng {
  return new Rng(
    (Math.imul(seed, 0x9e3779b1) ^ Math.imul(prompt + 1, 0x85ebca6b) ^ Math.imul(sample + 1, 0xc2b2ae35)) >>>
      0,
  );
}

/** Earliest index at which any stop string occurs in `text` at or after `from`, or -1. */
export function findStop(
  text: string,
  stops: readonly string[],
  from = 0,
): { index: number; stop: string } | null {
  let best: { index: number; stop: string } | null = null;
  for (const s of stops) {
    if (!s) continue;
    const i = text.indexOf(s, Math.max(0, from));
    if (i >= 0 && (!best || i < best.index)) best = { index: i, stop: s };
  }
  return best;
}
