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

/** Samples one token id from `row` (logits over the vocabulary; entries >= `limit` are ignored). */
export function sampleToken(
  row: ArrayLike<number>,
  opts: SamplingOptions,
  rng: Rng,
  limit = row.length,
): number {
  if (opts.temperature <= 0) return argmax(row, limit);
  const t = opts.temperature;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < limit; i++) if (row[i] > max) max = row[i];
  // candidates sorted by logit only when top-k / top-p need an order
  const k = opts.topK > 0 && opts.topK < limit ? opts.topK : limit;
  const needOrder = k < limit || opts.topP < 1;
  let ids: number[];
  if (needOrder) {
    ids = Array.from({ length: limit }, (_, i) => i);
    ids.sort((a, b) => row[b] - row[a] || a - b);
    ids.length = k;
  } else ids = Array.from({ length: limit }, (_, i) => i);
  const p = ids.map((i) => Math.exp((row[i] - max) / t));
  let z = p.reduce((a, b) => a + b, 0);
  if (opts.topP < 1) {
    let cum = 0;
    let keep = 0;
    while (keep < p.length) {
      cum += p[keep] / z;
      keep++;
      if (cum >= opts.topP) break;
    }
    ids.length = keep;
    p.length = keep;
    z = p.reduce((a, b) => a + b, 0);
  }
  let u = rng.next() * z;
  for (let j = 0; j < ids.length; j++) {
    u -= p[j];
    if (u < 0) return ids[j];
  }
  return ids[ids.length - 1];
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
