// A counter-based PRNG: the n-th draw of a stream is a pure hash of (seed, stream, n), so any draw
// can be recomputed after a resume without replaying earlier ones, and per-(step, question) streams
// never interfere. The mixer is the "lowbias32" integer hash (Chris Wellons' hash-prospector),
// applied in rounds; two 32-bit outputs make one 53-bit uniform double.

/** The only thing algo/ needs from randomness: uniform doubles in [0, 1). */
export interface Rng {
  next(): number;
}

function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over UTF-16 code units, mixed; turns a label such as 'refinement-select' into a stream id. */
export function hashLabel(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return mix32(h);
}

function toWord(part: number | string): number {
  if (typeof part === 'string') return hashLabel(part);
  if (!Number.isSafeInteger(part) || part < 0)
    throw new RangeError(`rng seed parts must be non-negative integers or strings, got ${part}`);
  // Fold the high bits in so seeds above 2^32 still differ.
  return mix32((part >>> 0) ^ mix32(Math.floor(part / 0x1_0000_0000)));
}

/** The uniform double in [0, 1) at position `counter` of stream `key` (a folded seed + labels). */
export function uniformAt(key: number, counter: number): number {
  const hi = mix32(mix32(key ^ 0x9e3779b9) ^ mix32(counter));
  const lo = mix32(hi ^ mix32(key + 0x6a09e667) ^ counter);
  return ((hi >>> 5) * 0x4000000 + (lo >>> 6)) / 0x20000000000000;
}

/** A seeded, deterministic stream. `createRng(jobSeed, 'select', step, question)` names one stream. */
export class CounterRng implements Rng {
  private counter = 0;
  readonly key: number;

  constructor(...parts: (number | string)[]) {
    let key = 0x2545f491;
    for (const part of parts) key = mix32(key ^ toWord(part)) ^ Math.imul(key, 0x01000193);
    this.key = key >>> 0;
  }

  next(): number {
    return uniformAt(this.key, this.counter++);
  }

  /** An integer in [0, n). */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`nextInt needs a positive integer, got ${n}`);
    return Math.floor(this.next() * n);
  }

  /** Draws made so far (store it to resume a stream exactly). */
  get position(): number {
    return this.counter;
  }

  seek(position: number): this {
    this.counter = position;
    return this;
  }
}

export function createRng(...parts: (number | string)[]): CounterRng {
  return new CounterRng(...parts);
}

/** Fisher–Yates shuffle of 0..n-1 driven by `rng`. */
export function shuffledIndices(n: number, rng: Rng): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}
