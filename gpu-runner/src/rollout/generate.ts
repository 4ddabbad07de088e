// Batched generation with a KV cache: one prefill per distinct prompt (left-padded batch), the
// cache rows repeated for the n samples of each prompt, then one-token decode steps. Rows that
// finish (EOS, stop string, max tokens) are dropped from the cache so later steps do less work.

import { attentionBias } from '../model/graphs';
import type { CausalLM } from '../model/model';
import type { ChatMessage } from '../model/tokenizer';
import { findStop, sampleRng, sampleToken } from './sampling';

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
}

export type FinishReason = 'eos' | 'stop' | 'length';

export interface Completion {
  prompt: number;
  sample: number;
  /** generated ids (the EOS id included when it ended the sequence) */
  tokens: number[];
  text: string;
  finishReason: FinishReason;
}

export interface GenerateStats {
  prefillMs: number;
  decodeMs: number;
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
        rng: sampleRng(opts.seed ?? 0, p, s),
        done: null,
        text: '',
      });
    }
  }
  if (n > 1) await model.selectCacheRows(rows.map((r) => r.prompt));
  const finished: Row[] = [];
  let logits = pre.logits;
  let logitRow = (i: number) => rows[i].prompt; // prefill logits are per prompt
  let steps = 0;
  for (;;) {
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      const off = logitRow(i) * V;
      const tok = sampleToken(logits.subarray(off, off + V), sampling, r.rng, limit);
      r.tokens.push(tok);
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
    }
    const keep = rows.map((r, i) => (r.done ? -1 : i)).filter((i) => i >= 0);
    for (const r of rows) if (r.done) finished.push(r);
    if (keep.length === 0) break;
    if (keep.length < rows.length) {
      await model.selectCacheRows(keep);
      rows = keep.map((i) => rows[i]);
    }
    const B = rows.length;
    const total = rows[0].valid.length + 1;
    const stepIds = new BigInt64Array(B);
    const stepPos = new BigInt64Array(B);
    const keyValid: Uint8Array[] = [];
    rows.forEach((r, b) => {
      stepIds[b] = BigInt(r.tokens[r.tokens.length - 1]);
      stepPos[b] = BigInt(r.nextPos++);
      r.valid.push(1);
      keyValid.push(Uint8Array.from(r.valid));
    });
    const out = await model.decodeRun({
      input_ids: { dims: [B, 1], data: stepIds },
      position_ids: { dims: [B, 1], data: stepPos },
      attn_bias: { dims: [B, 1, 1, total], data: attentionBias(keyValid, 1) },
    });
    logits = out.logits;
    logitRow = (i) => i;
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
    }));
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
