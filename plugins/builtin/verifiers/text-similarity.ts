// builtin:text-similarity — the response's similarity to the reference is the reward (0..1), the
// counterpart of OpenAI's `text_similarity` grader. fuzzy_match is fuzzball's WRatio (a port of
// TheFuzz, the algorithm rapidfuzz implements); ROUGE is js-rouge with rouge_score's tokenizer;
// BLEU and GLEU are short implementations of NLTK's sentence_bleu / sentence_gleu (no maintained
// npm package computes them), tested against hand-computed values.
import { TEXT_SIMILARITY_METRICS, type VerifierInput, type VerifierResult } from '@cgrpo/contract';
import { WRatio } from 'fuzzball';
import { l as rougeL, n as rougeN } from 'js-rouge';
import { z } from 'zod';

export type TextSimilarityMetric = (typeof TEXT_SIMILARITY_METRICS)[number];

export const TextSimilarityConfigSchema = z.strictObject({
  metric: z.enum(TEXT_SIMILARITY_METRICS),
  /** `correct` (for critics and pass@k) is score >= pass_threshold; the reward is the score itself. */
  pass_threshold: z.number().min(0).max(1).default(0.5),
});
export type TextSimilarityConfig = z.output<typeof TextSimilarityConfigSchema>;

/** Whitespace tokens, as NLTK's BLEU/GLEU are usually fed (`text.split()`), case kept. */
const words = (text: string): string[] => text.split(/\s+/).filter((w) => w !== '');

/** rouge_score's default tokenizer: lowercase, anything but [a-z0-9] separates tokens. */
const rougeTokens = (text: string): string[] =>
  text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, ' ')
    .split(' ')
    .filter((w) => w !== '');

function ngramCounts(tokens: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const gram = tokens.slice(i, i + n).join('\u0000');
    counts.set(gram, (counts.get(gram) ?? 0) + 1);
  }
  return counts;
}

/** n-grams of the hypothesis also in the reference, each clipped to its count there. */
function clippedMatches(hyp: Map<string, number>, ref: Map<string, number>): number {
  let matches = 0;
  for (const [gram, count] of hyp) matches += Math.min(count, ref.get(gram) ?? 0);
  return matches;
}

/**
 * Sentence BLEU-4 (Papineni et al.; NLTK sentence_bleu with its defaults): the geometric mean of the
 * clipped n-gram precisions for n = 1..4 times the brevity penalty exp(1 - r/c) when c < r. Without
 * smoothing, an order with no match makes the score 0 (NLTK returns ~1e-300 there).
 */
export function bleu(hypothesis: string, reference: string): number {
  const hyp = words(hypothesis);
  const ref = words(reference);
  if (hyp.length === 0 || ref.length === 0) return 0;
  let logSum = 0;
  for (let n = 1; n <= 4; n++) {
    const h = ngramCounts(hyp, n);
    const matches = clippedMatches(h, ngramCounts(ref, n));
    if (matches === 0) return 0;
    logSum += Math.log(matches / Math.max(1, hyp.length - n + 1)) / 4;
  }
  const brevity = hyp.length >= ref.length ? 1 : Math.exp(1 - ref.length / hyp.length);
  return brevity * Math.exp(logSum);
}

/**
 * Sentence GLEU (Wu et al. 2016; NLTK sentence_gleu): over all n-grams with n = 1..4, the matches
 * divided by the larger of the hypothesis' and the reference's n-gram counts, i.e. min(precision, recall).
 */
export function gleu(hypothesis: string, reference: string): number {
  const hyp = words(hypothesis);
  const ref = words(reference);
  let matches = 0;
  let hypTotal = 0;
  let refTotal = 0;
  for (let n = 1; n <= 4; n++) {
    matches += clippedMatches(ngramCounts(hyp, n), ngramCounts(ref, n));
    hypTotal += Math.max(0, hyp.length - n + 1);
    refTotal += Math.max(0, ref.length - n + 1);
  }
  const total = Math.max(hypTotal, refTotal);
  return total === 0 ? 0 : matches / total;
}

/** ROUGE-N / ROUGE-L F1 over rouge_score's tokens; ROUGE-L over the whole text (not per sentence). */
export function rouge(
  metric: Exclude<TextSimilarityMetric, 'fuzzy_match' | 'bleu' | 'gleu'>,
  hypothesis: string,
  reference: string,
): number {
  const hyp = rougeTokens(hypothesis);
  const ref = rougeTokens(reference);
  if (hyp.length === 0 || ref.length === 0) return 0;
  const tokenizer = (text: string) => rougeTokens(text);
  if (metric === 'rouge_l') return rougeL(hypothesis, reference, { tokenizer, segmenter: (text) => [text] });
  return rougeN(hypothesis, reference, { n: Number(metric.slice(-1)), tokenizer });
}

/** fuzzball's WRatio (TheFuzz / rapidfuzz WRatio) with full processing, unicode kept, as 0..1. */
export function fuzzyMatch(hypothesis: string, reference: string): number {
  return WRatio(hypothesis, reference, { full_process: true, force_ascii: false }) / 100;
}

export function similarity(metric: TextSimilarityMetric, hypothesis: string, reference: string): number {
  switch (metric) {
    case 'fuzzy_match':
      return fuzzyMatch(hypothesis, reference);
    case 'bleu':
      return bleu(hypothesis, reference);
    case 'gleu':
      return gleu(hypothesis, reference);
    default:
      return rouge(metric, hypothesis, reference);
  }
}

export function verifyTextSimilarity(
  input: Pick<VerifierInput, 'response' | 'reference'>,
  config: TextSimilarityConfig,
): VerifierResult {
  const score = Math.min(1, Math.max(0, similarity(config.metric, input.response, input.reference)));
  return {
    score,
    correct: score >= config.pass_threshold,
    details: { metric: config.metric, pass_threshold: config.pass_threshold },
  };
}
