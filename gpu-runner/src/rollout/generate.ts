// Batched generation with a KV cache: one prefill per distinct prompt (left-padded batch), the
// cache rows repeated for the n samples of each prompt, then decode runs of up to `chunk` steps
// each with the sampling inside the graph (or one-token runs sampled in JS, `sampler: 'js'`).
// Rows that finish (EOS, stop string, max tokens) are dropped from the cache between runs.

import { attentionBias, type SampleMode } from '../model/graphs';
import type { CausalLM } from '../model/model';
import type { ChatMessage } from '../model/tokenizer';
import { findStop, type SamplingOptions, sampleRng, sampleToken, tokenLogProb } from './sampling';

/** Decode steps per graph run when sampling in-graph (runs use the largest power of two that fits).
 *  1 by default: on the CPU, 8 unrolled steps were not reliably faster than one step per run on
 *  the 0.5B shape (bench/RESULTS.md, decode); raise it where per-run costs dominate (CUDA, unmeasured). */
export const DEFAULT_CHUNK = 1;
export const MAX_CHUNK = 64;

export interface GenerateOptions {
  maxNewTokens: number;
  /** samples per prompt (they share the prompt's prefill) */
  n?: number;
  /** 0 = greedy */
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  /** generation ends when the decoded text contains one of these (it is cut from `text`) */
  stop?: string[];
  /** default: the model's (generation_config.json + tokenizer) */
  eosTokenIds?: number[];
  /** 'graph' (default): temperature / top-k / top-p sampling inside the decode graph, fed the
   *  same seeded uniforms as the JS sampler; 'js': one-token runs, sampled on the main thread */
  sampler?: 'graph' | 'js';
  /** most decode steps per graph run with the graph sampler (1..64, default 1); tokens a row
   *  samples after its EOS or stop string within a run are discarded */
  chunk?: number;
  /** record `logprobs` (default true; free with the graph sampler, one vocabulary pass per token in JS) */
  logprobs?: boolean;
}

export type FinishReason = 'eos' | 'stop' | 'length';

export interface Completion {
  prompt: number;
  sample: number;
  /** generated ids (the EOS id included when it ended the sequence) */
  tokens: number[];
  text: string;
  finishReason: FinishReason;
  /** log softmax(logits / temperature) of each generated token (temperature 1 when greedy), the
   *  score graph's quantity; absent when `logprobs: false` */
  logprobs?: number[];
}

export interface GenerateStats {
  prefillMs: number;
  decodeMs: number;
  /** decode graph runs after the prefill */
  steps: number;
  generatedTokens: number;
}

export class GenerateError extends Error {
  constructor(
    readonly code: string,
    readonly field: string,
    message: string,
  ) {
    super(`${code}: ${field}: ${message}`);
  }
}

interface Row {
  prompt: number;
  sample: number;
  /** key positions that hold real tokens (pads are 0) */
  valid: number[];
  nextPos: number;
  tokens: number[];
  logprobs: number[];
  rng: ReturnType<typeof sampleRng>;
  done: FinishReason | null;
  text: string;
}

/** A prompt as token ids, raw text (encoded as is), or chat messages (rendered with the chat template). */
export type Prompt = readonly number[] | string | readonly ChatMessage[];

export function encodePrompt(model: CausalLM, prompt: Prompt): number[] {
  if (typeof prompt === 'string') return model.tokenizer.encode(prompt);
  if (prompt.length > 0 && typeof prompt[0] === 'object') {
    return model.tokenizer.encode(
      model.tokenizer.applyChatTemplate(prompt as ChatMessage[], { addGenerationPrompt: true }),
    );
  }
  return [...(prompt as readonly number[])];
}

export function generate(
  model: CausalLM,
  prompts: readonly Prompt[],
  opts: GenerateOptions,
  stats?: GenerateStats,
): Promise<Completion[]> {
  // the KV cache lives in the model's runtime state: one generation at a time per model
  return model.exclusive(() => generateNow(model, prompts, opts, stats));
}

async function generateNow(
  model: CausalLM,
  promptsIn: readonly Prompt[],
  opts: GenerateOptions,
  stats?: GenerateStats,
): Promise<Completion[]> {
  const n = opts.n ?? 1;
  if (promptsIn.length === 0) return [];
  const prompts = promptsIn.map((p) => encodePrompt(model, p));
  if (!(opts.maxNewTokens >= 1))
    throw new GenerateError('generate_bad_option', 'maxNewTokens', 'must be >= 1');
  prompts.forEach((p, i) => {
    if (p.length === 0)
      throw new GenerateError('generate_empty_prompt', `prompts[${i}]`, 'a prompt needs at least one token');
  });
  const sampling = { temperature: opts.temperature ?? 1, topK: opts.topK ?? 0, topP: opts.topP ?? 1 };
  const sampler = opts.sampler ?? 'graph';
  const chunk = opts.chunk ?? DEFAULT_CHUNK;
  if (!Number.isInteger(chunk) || chunk < 1 || chunk > MAX_CHUNK)
    throw new GenerateError('generate_bad_option', 'chunk', `must be an integer in 1..${MAX_CHUNK}`);
  const wantLogprobs = opts.logprobs ?? true;
  const eos = new Set(opts.eosTokenIds ?? model.eosTokenIds);
  const stops = (opts.stop ?? []).filter((s) => s.length > 0);
  const limit = model.vocabLimit;
  const V = model.config.vocabSize;
  const t0 = performance.now();

  // prefill: distinct prompts, left-padded
  const P = prompts.length;
  const L = Math.max(...prompts.map((p) => p.length));
  const ids = new BigInt64Array(P * L).fill(BigInt(model.tokenizer.padTokenId));
  const pos = new BigInt64Array(P * L);
  const valid: Uint8Array[] = [];
  prompts.forEach((p, b) => {
    const pad = L - p.length;
    const v = new Uint8Array(L);
    for (let t = 0; t < p.length; t++) {
      ids[b * L + pad + t] = BigInt(p[t]);
      pos[b * L + pad + t] = BigInt(t);
      v[pad + t] = 1;
    }
    valid.push(v);
  });
  const pre = await model.decodeRun({
    input_ids: { dims: [P, L], data: ids },
    position_ids: { dims: [P, L], data: pos },
    attn_bias: { dims: [P, 1, L, L], data: attentionBias(valid, L) },
    ...model.emptyCache(P),
  });
  const prefillDone = performance.now();

  // one row per sample; the cache rows of prompt p are repeated n times
  let rows: Row[] = [];
  for (let p = 0; p < P; p++) {
    for (let s = 0; s < n; s++) {
      rows.push({
        prompt: p,
        sample: s,
        valid: Array.from(valid[p]),
        nextPos: prompts[p].length,
        tokens: [],
        logprobs: [],
        rng: sampleRng(opts.seed ?? 0, p, s),
        done: null,
        text: '',
      });
    }
  }
  if (n > 1) await model.selectCacheRows(rows.map((r) => r.prompt));
  const accept = (r: Row, tok: number, logp: number) => {
    r.tokens.push(tok);
    if (wantLogprobs) r.logprobs.push(logp);
    if (eos.has(tok)) r.done = 'eos';
    else if (stops.length > 0) {
      const text = model.tokenizer.decode(r.tokens, { skipSpecialTokens: true });
      const longest = Math.max(...stops.map((s) => s.length));
      const hit = findStop(text, stops, r.text.length - longest);
      r.text = text;
      if (hit) {
        r.done = 'stop';
        r.text = text.slice(0, hit.index);
      }
    }
    if (!r.done && r.tokens.length >= opts.maxNewTokens) r.done = 'length';
  };
  // the first token comes from the prefill logits (one row per prompt), sampled in JS
  const sampleJs = (logits: Float32Array, i: number, r: Row) => {
    const row = logits.subarray(i * V, (i + 1) * V);
    const tok = sampleToken(row, sampling, r.rng, limit);
    accept(r, tok, wantLogprobs ? tokenLogProb(row, tok, sampling.temperature, limit) : 0);
  };
  for (const r of rows) sampleJs(pre.logits, r.prompt, r);
  const mode = sampleMode(sampling, limit);
  const finished: Row[] = [];
  let steps = 0;
  for (;;) {
    const keep = rows.map((r, i) => (r.done ? -1 : i)).filter((i) => i >= 0);
    for (const r of rows) if (r.done) finished.push(r);
    if (keep.length === 0) break;
    if (keep.length < rows.length) {
      await model.selectCacheRows(keep);
      rows = keep.map((i) => rows[i]);
    }
    const B = rows.length;
    const total = rows[0].valid.length;
    // live rows advance in lockstep: they all hold the same number of tokens
    const K = sampler === 'js' ? 1 : floorPow2(Math.min(chunk, opts.maxNewTokens - rows[0].tokens.length));
    const stepIds = new BigInt64Array(B);
    const stepPos = new BigInt64Array(B);
    rows.forEach((r, b) => {
      stepIds[b] = BigInt(r.tokens[r.tokens.length - 1]);
      stepPos[b] = BigInt(r.nextPos);
    });
    if (sampler === 'js') {
      const keyValid = rows.map((r) => Uint8Array.from([...r.valid, 1]));
      const out = await model.decodeRun({
        input_ids: { dims: [B, 1], data: stepIds },
        position_ids: { dims: [B, 1], data: stepPos },
        attn_bias: { dims: [B, 1, 1, total + 1], data: attentionBias(keyValid, 1) },
      });
      for (const [b, r] of rows.entries()) sampleJs(out.logits, b, r);
    } else {
      const keyValid = new Float32Array(B * total);
      const uniforms = new Float32Array(B * K);
      rows.forEach((r, b) => {
        for (let j = 0; j < total; j++) keyValid[b * total + j] = r.valid[j];
        // the JS sampler's draws, in the same order (one per sampled token; none when greedy)
        if (mode !== 'greedy') for (let s = 0; s < K; s++) uniforms[b * K + s] = r.rng.next();
      });
      const out = await model.decodeChunkRun(mode, K, {
        tokens: { dims: [B], data: stepIds },
        next_position: { dims: [B], data: stepPos },
        key_valid: { dims: [B, total], data: keyValid },
        uniforms: { dims: [B, K], data: uniforms },
        temperature: { dims: [], data: Float32Array.of(sampling.temperature > 0 ? sampling.temperature : 1) },
        top_k: {
          dims: [1],
          data: BigInt64Array.of(BigInt(sampling.topK > 0 && sampling.topK < limit ? sampling.topK : limit)),
        },
        top_p: { dims: [], data: Float32Array.of(sampling.topP) },
      });
      rows.forEach((r, b) => {
        for (let s = 0; s < K && !r.done; s++) accept(r, Number(out.tokens[b * K + s]), out.logp[b * K + s]);
      });
    }
    for (const r of rows) {
      for (let s = 0; s < K; s++) r.valid.push(1);
      r.nextPos += K;
    }
    steps++;
  }
  const end = performance.now();
  if (stats) {
    stats.prefillMs += prefillDone - t0;
    stats.decodeMs += end - prefillDone;
    stats.steps += steps;
    stats.generatedTokens += finished.reduce((a, r) => a + r.tokens.length, 0);
  }
  return finished
    .sort((a, b) => a.prompt - b.prompt || a.sample - b.sample)
    .map((r) => ({
      prompt: r.prompt,
      sample: r.sample,
      tokens: r.tokens,
      // what verifiers, critics and the rollout store read: special tokens are not text (HF skip_special_tokens)
      text: r.done === 'stop' ? r.text : model.tokenizer.decode(r.tokens, { skipSpecialTokens: true }),
      finishReason: r.done ?? 'length',
      ...(wantLogprobs ? { logprobs: r.logprobs } : {}),
    }));
}

/** Which sampling head the decode-chunk graph needs for these options. */
export function sampleMode(opts: SamplingOptions, vocabLimit: number): SampleMode {
  if (opts.temperature <= 0) return 'greedy';
  return (opts.topK > 0 && opts.topK < vocabLimit) || opts.topP < 1 ? 'sorted' : 'full';
}

function floorPow2(x: number): number {
  let p = 1;
  while (p * 2 <= x) p *= 2;
  return p;
}

/**
 * The same generation as `generate`, with the whole decode loop inside one graph run (ONNX Loop,
 * in-graph sampling): the shape CUDA wants, since onnxruntime-node copies every run's inputs and
 * outputs. Differences: each sample runs its own prefill (no prefix sharing), finished rows keep
 * their cache slot until every row is done, stop strings are not supported (use `generate`), and
 * the random draws differ from `generate`'s for the same seed (reproducible per seed either way).
 */
export function generateInGraph(
  model: CausalLM,
  prompts: readonly Prompt[],
  opts: GenerateOptions,
  stats?: GenerateStats,
): Promise<Completion[]> {
  return model.exclusive(() => generateInGraphNow(model, prompts, opts, stats));
}

async function generateInGraphNow(
  model: CausalLM,
  promptsIn: readonly Prompt[],
  opts: GenerateOptions,
  stats?: GenerateStats,
): Promise<Completion[]> {
  const n = opts.n ?? 1;
  if (promptsIn.length === 0) return [];
  if (!(opts.maxNewTokens >= 1))
    throw new GenerateError('generate_bad_option', 'maxNewTokens', 'must be >= 1');
  if (opts.stop && opts.stop.length > 0) {
    throw new GenerateError(
      'generate_bad_option',
      'stop',
      'stop strings need the per-step loop: use generate()',
    );
  }
  const encoded = promptsIn.map((p) => encodePrompt(model, p));
  encoded.forEach((p, i) => {
    if (p.length === 0)
      throw new GenerateError('generate_empty_prompt', `prompts[${i}]`, 'a prompt needs at least one token');
  });
  const rows = encoded.flatMap((p, prompt) =>
    Array.from({ length: n }, (_, sample) => ({ prompt, sample, ids: p })),
  );
  const B = rows.length;
  const L = Math.max(...rows.map((r) => r.ids.length));
  const pad = model.tokenizer.padTokenId;
  const ids = new BigInt64Array(B * L).fill(BigInt(pad));
  const pos = new BigInt64Array(B * L);
  const valid: Uint8Array[] = [];
  const keyValid = new Float32Array(B * L);
  rows.forEach((r, b) => {
    const off = L - r.ids.length;
    const v = new Uint8Array(L);
    r.ids.forEach((t, i) => {
      ids[b * L + off + i] = BigInt(t);
      pos[b * L + off + i] = BigInt(i);
      v[off + i] = 1;
      keyValid[b * L + off + i] = 1;
    });
    valid.push(v);
  });
  const temperature = opts.temperature ?? 1;
  const greedy = temperature <= 0;
  const eos = opts.eosTokenIds ?? model.eosTokenIds;
  const g = await model.loopDecodeGraph(greedy, greedy ? 0 : (opts.topK ?? 0));
  const t0 = performance.now();
  const r = await g.run(
    {
      input_ids: { dims: [B, L], data: ids },
      position_ids: { dims: [B, L], data: pos },
      attn_bias: { dims: [B, 1, L, L], data: attentionBias(valid, L) },
      key_valid: { dims: [B, L], data: keyValid },
      next_position: { dims: [B], data: BigInt64Array.from(rows.map((x) => BigInt(x.ids.length))) },
      max_steps: { dims: [], data: BigInt64Array.of(BigInt(opts.maxNewTokens - 1)) },
      seed: { dims: [], data: BigInt64Array.of(BigInt(opts.seed ?? 0)) },
      temperature: greedy ? 1 : temperature,
      top_p: opts.topP ?? 1,
      // no EOS wanted: an id that never occurs
      eos_ids: {
        dims: [Math.max(1, eos.length)],
        data: BigInt64Array.from((eos.length ? eos : [-1]).map(BigInt)),
      },
      pad_id: { dims: [], data: BigInt64Array.of(BigInt(pad)) },
    },
    { stateKey: model.stateKey, fetch: ['first', 'rest'] },
  );
  const first = r.outputs.first.data as BigInt64Array;
  const rest = r.outputs.rest.data as BigInt64Array;
  const trips = r.outputs.rest.dims[0] ?? 0;
  const eosSet = new Set(eos);
  const out = rows.map((row, b): Completion => {
    const tokens: number[] = [];
    let finishReason: FinishReason = 'length';
    for (let s = 0; s <= trips && tokens.length < opts.maxNewTokens; s++) {
      const t = Number(s === 0 ? first[b] : rest[(s - 1) * B + b]);
      tokens.push(t);
      if (eosSet.has(t)) {
        finishReason = 'eos';
        break;
      }
    }
    return {
      prompt: row.prompt,
      sample: row.sample,
      tokens,
      text: model.tokenizer.decode(tokens, { skipSpecialTokens: true }),
      finishReason,
    };
  });
  if (stats) {
    stats.decodeMs += performance.now() - t0;
    stats.steps += trips;
    stats.generatedTokens += out.reduce((a, c) => a + c.tokens.length, 0);
  }
  return out;
}
