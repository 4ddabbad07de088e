// Reduces a byte-level BPE tokenizer.json (Qwen, Llama 3) to a small vocabulary that still encodes
// any text: all 256 byte tokens, every token the seed texts use (with the merges that build it),
// then the highest-priority merges until the target size. Special tokens are all kept.
import { Tokenizer } from '@huggingface/tokenizers';

interface BpeModel {
  type: string;
  vocab: Record<string, number>;
  merges: (string | [string, string])[];
  [k: string]: unknown;
}
interface AddedToken {
  id: number;
  content: string;
  [k: string]: unknown;
}

export interface ReducedTokenizer {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  /** old id → new id */
  idMap: Map<number, number>;
  vocabSize: number;
}

export interface ReduceOptions {
  /** regular (non-special) vocabulary size to aim for */
  targetSize: number;
  /** texts whose tokenization must be kept exactly */
  seedTexts: string[];
}

const pair = (m: string | [string, string]): [string, string] => {
  if (Array.isArray(m)) return m;
  const i = m.indexOf(' ', 1);
  return [m.slice(0, i), m.slice(i + 1)];
};

export function reduceTokenizer(
  tokenizerJson: Record<string, unknown>,
  tokenizerConfig: Record<string, unknown>,
  opts: ReduceOptions,
): ReducedTokenizer {
  const model = tokenizerJson.model as BpeModel;
  if (model.type !== 'BPE')
    throw new Error(`reduce-tokenizer: only BPE models are supported, got ${model.type}`);
  const added = (tokenizerJson.added_tokens ?? []) as AddedToken[];
  const merges = model.merges.map(pair);
  const producedBy = new Map<string, [string, string]>();
  for (const [a, b] of merges) if (!producedBy.has(a + b)) producedBy.set(a + b, [a, b]);

  const keep = new Set<string>();
  for (const [t] of Object.entries(model.vocab)) if ([...t].length === 1) keep.add(t);
  const addWithParts = (t: string): void => {
    if (keep.has(t)) return;
    const parts = producedBy.get(t);
    if (!parts) throw new Error(`reduce-tokenizer: token ${JSON.stringify(t)} has no merge that builds it`);
    addWithParts(parts[0]);
    addWithParts(parts[1]);
    keep.add(t);
  };
  const full = new Tokenizer(tokenizerJson, tokenizerConfig);
  const specials = new Set(added.map((a) => a.content));
  for (const text of opts.seedTexts) {
    for (const t of full.tokenize(text, { add_special_tokens: false })) if (!specials.has(t)) addWithParts(t);
  }
  for (const [a, b] of merges) {
    if (keep.size >= opts.targetSize) break;
    if (keep.has(a) && keep.has(b) && model.vocab[a + b] !== undefined) keep.add(a + b);
  }

  const kept = [...keep].sort((x, y) => model.vocab[x] - model.vocab[y]);
  const idMap = new Map<number, number>();
  const vocab: Record<string, number> = {};
  kept.forEach((t, i) => {
    vocab[t] = i;
    idMap.set(model.vocab[t], i);
  });
  let next = kept.length;
  const newAdded = added.map((a) => {
    const id = next++;
    idMap.set(a.id, id);
    return { ...a, id };
  });
  const newMerges = merges
    .filter(([a, b]) => keep.has(a) && keep.has(b) && keep.has(a + b))
    .map(([a, b]) => [a, b]);
  const outJson = { ...tokenizerJson, added_tokens: newAdded, model: { ...model, vocab, merges: newMerges } };
  const outConfig: Record<string, unknown> = { ...tokenizerConfig };
  const dec = tokenizerConfig.added_tokens_decoder as Record<string, unknown> | undefined;
  if (dec) {
    const remapped: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(dec)) {
      const id = idMap.get(Number(k));
      if (id !== undefined) remapped[String(id)] = v;
    }
    outConfig.added_tokens_decoder = remapped;
  }
  return { tokenizerJson: outJson, tokenizerConfig: outConfig, idMap, vocabSize: next };
}

/** Texts the tiny models and the math demo need to tokenize as the full tokenizer does. */
export const SEED_TEXTS: string[] = [
  'You are a helpful assistant. Please reason step by step, and put your final answer within \\boxed{}.',
  'What is 12 + 35? Compute 7 * 8 - 6 / 3. The answer is 42. Solve for x: 3x + 5 = 20, so x = 5.',
  'Question: Tom has 3 apples and buys 4 more. How many apples does he have now? Answer: 7',
  'The response is correct. The response is incorrect: the final answer should be 15, not 12.',
  'Critique: check the arithmetic in the second step. Refinement: Let me recompute the sum.',
  '0 1 2 3 4 5 6 7 8 9 10 100 1000 0123456789 + - * / = ( ) [ ] { } < > ^ % . , ; : ? ! \' " \n\n',
  'the of and to a in is it you that he was for on are with as I his they be at one have this from',
  'Hello world! The quick brown fox jumps over the lazy dog.',
];
