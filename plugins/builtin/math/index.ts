// builtin:math — is the response's final answer mathematically equal to the reference?
// Pipeline: extract candidates (extract.ts) -> normalise (normalize.ts) -> parse (parse.ts)
// -> compare (compare.ts, CAS in cas.ts). A pure function that never throws.

import { z } from 'zod';
import { freeSymbols, type Node, show } from './ast';
import { type Cas, mathjsCas } from './cas';
import { type CompareOptions, compareNodes, DeadlineExceeded } from './compare';
import { type Candidate, candidates, DEFAULT_EXTRACTION_ORDER, STRATEGIES, type Strategy } from './extract';
import { normalizeAnswer } from './normalize';
import { isUnknownCommand, looksLikeProse, parseAnswer } from './parse';

export type { Strategy } from './extract';
export { DEFAULT_EXTRACTION_ORDER } from './extract';

const StrategySchema = z.enum(STRATEGIES as [Strategy, ...Strategy[]]);

export const MathVerifierConfigSchema = z.strictObject({
  /** Tiers of extraction strategies; within a tier the rightmost match wins. */
  extraction_order: z
    .array(z.union([StrategySchema, z.array(StrategySchema).min(1)]))
    .min(1)
    .default(DEFAULT_EXTRACTION_ORDER),
  /** Decimal places both sides are rounded to when either is a decimal number (Math-Verify: 6). */
  float_rounding: z.number().int().min(0).max(12).default(6),
  /**
   * CAS used for symbolic equivalence: mathjs, chosen by measured accuracy and speed (see
   * docs/math-verifier.md). Kept as a key so configs that name it stay valid.
   */
  cas: z.enum(['mathjs']).default('mathjs'),
  /** When false, x + 1 and y + 1 are equal (variables matched by sorted name). */
  strict_variables: z.boolean().default(true),
  /** Also accept an inequality answer for an interval reference (Math-Verify's allow_set_relation_comp). */
  allow_set_relation_comparison: z.boolean().default(false),
  /** Per-case time bound; past it the case is scored 0 with reason "timeout". */
  timeout_ms: z.number().int().min(1).max(60_000).default(2_000),
  /** Only the last this-many characters of a response are searched (final answers are at the end). */
  max_response_chars: z.number().int().min(100).max(1_000_000).default(100_000),
  /** Expressions larger than this (nodes) are not sent to the CAS. */
  max_cas_nodes: z.number().int().min(10).max(5_000).default(400),
});

export type MathVerifierConfig = z.input<typeof MathVerifierConfigSchema>;
type ResolvedConfig = z.output<typeof MathVerifierConfigSchema>;

export interface MathVerifierInput {
  response: string;
  reference: string;
}

export interface MathVerifierResult {
  score: number;
  correct: boolean;
  details: MathVerifierDetails;
}

export interface MathVerifierDetails {
  /** The answer text taken from the response, or null when nothing was found. */
  extracted: string | null;
  /** Which extraction strategy produced it. */
  strategy: Strategy | null;
  /** Canonical forms after normalisation and parsing. */
  normalized_response: string | null;
  normalized_reference: string | null;
  /** The comparison rule that decided (e.g. "exact_number", "symbolic:mathjs", "collection"). */
  rule: string;
  /** Why the case failed, when it did. */
  reason?: string;
  units_stripped?: string[];
}

const DEFAULT_CONFIG: ResolvedConfig = MathVerifierConfigSchema.parse({});
// A job passes the same config object for every rollout: validate it once.
const parsedConfigs = new WeakMap<object, ResolvedConfig>();

interface ParsedAnswer {
  node: Node;
  /** A second reading of an ambiguous reference ("1,5": the list 1, 5 or the decimal 1.5). */
  alternative?: Node;
  candidate: Candidate | null;
  units: string[];
}

function parseCandidate(text: string, percent: boolean): { node: Node; units: string[] } | null {
  try {
    const { text: norm, strippedUnits } = normalizeAnswer(text);
    if (norm === '') return null;
    let node: Node;
    try {
      node = parseAnswer(norm);
    } catch (e) {
      // like Math-Verify: an unparseable chain "a = \\foo = 5" is retried as its last part
      const parts = /[,;]/.test(norm) ? [] : norm.split(/(?<![<>!\\])=/);
      if (parts.length < 3) throw e;
      node = parseAnswer(parts.at(-1)!.trim());
    }
    // ... and so is a chain that parsed only because an unknown command (\zzz) became a symbol
    if (isChainWithUnknownCommand(node)) {
      const last = norm
        .split(/(?<![<>!\\])=/)
        .at(-1)!
        .trim();
      try {
        node = parseAnswer(last);
      } catch {}
    }
    if (percent && node.k !== 'pct') node = { k: 'pct', arg: node };
    return { node, units: strippedUnits };
  } catch {
    return null;
  }
}

function isChainWithUnknownCommand(node: Node): boolean {
  if (node.k !== 'rel' || node.sides.length < 3 || !node.ops.every((op) => op === '=')) return false;
  return node.sides.some((side) => [...freeSymbols(side)].some(isUnknownCommand));
}

const referenceCache = new Map<string, ParsedAnswer | null>();
const REFERENCE_CACHE_SIZE = 512;

/** References are usually clean ("5", "$\frac12$", "\boxed{(1,2)}"); parse whole, else extract. */
function parseReference(reference: string, order: ResolvedConfig['extraction_order']): ParsedAnswer | null {
  const key = `${JSON.stringify(order)}\u0000${reference}`;
  const hit = referenceCache.get(key);
  if (hit !== undefined) return hit;
  let result: ParsedAnswer | null = null;
  let t = reference.trim();
  const boxed = /\\(?:boxed|fbox)\s*\{/.test(t) ? candidates(t, ['boxed']).next().value : undefined;
  if (boxed) t = boxed.text;
  const wrapped = /^\$\$([\s\S]*)\$\$$|^\$([\s\S]*)\$$|^\\\(([\s\S]*)\\\)$|^\\\[([\s\S]*)\\\]$/.exec(t);
  if (wrapped) t = wrapped[1] ?? wrapped[2] ?? wrapped[3] ?? wrapped[4] ?? t;
  const whole = looksLikeProse(t) ? null : parseCandidate(t, false);
  if (whole) {
    result = { node: whole.node, candidate: null, units: whole.units };
    // A bare reference "1,22" or "0,5" may use a decimal comma (Math-Verify reads 1.22) or be a
    // list of two answers (roots "1,3"): both readings are accepted. "1,234" is only thousands,
    // and "$1,22$" only a list.
    const decimal = wrapped || boxed ? null : decimalComma(t);
    const alt = decimal === null ? null : parseCandidate(decimal, false);
    if (alt) result.alternative = alt.node;
  } else {
    for (const c of candidates(reference, order)) {
      const p = parseCandidate(c.text, c.percent);
      if (p) {
        result = { node: p.node, candidate: c, units: p.units };
        break;
      }
    }
  }
  if (referenceCache.size >= REFERENCE_CACHE_SIZE) referenceCache.delete(referenceCache.keys().next().value!);
  referenceCache.set(key, result);
  return result;
}

function decimalComma(t: string): string | null {
  if (!/^-?\d+,\d+$/.test(t) || /^-?[1-9]\d{0,2}(?:,\d{3})+$/.test(t)) return null;
  return t.replace(',', '.');
}

function result(correct: boolean, details: MathVerifierDetails): MathVerifierResult {
  return { score: correct ? 1 : 0, correct, details };
}

/**
 * Scores `response` against `reference`: 1 when the extracted final answer is mathematically
 * equal to the reference, else 0. Never throws; `details` says what was extracted and why.
 */
export function verifyMath(input: MathVerifierInput, config?: MathVerifierConfig): MathVerifierResult {
  return verifyMathWithCas(mathjsCas, input, config);
}

/**
 * verifyMath with another CAS adapter for the symbolic tier; only the math tests and
 * bench/verifier.ts use it, to keep the measured mathjs / Compute Engine comparison runnable.
 */
export function verifyMathWithCas(
  cas: Cas,
  input: MathVerifierInput,
  config?: MathVerifierConfig,
): MathVerifierResult {
  const empty: MathVerifierDetails = {
    extracted: null,
    strategy: null,
    normalized_response: null,
    normalized_reference: null,
    rule: 'none',
  };
  let cfg = DEFAULT_CONFIG;
  const cached = config !== undefined && config !== null ? parsedConfigs.get(config) : undefined;
  if (cached) cfg = cached;
  else if (config !== undefined) {
    const parsed = MathVerifierConfigSchema.safeParse(config);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return result(false, {
        ...empty,
        reason: `config_invalid: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}`,
      });
    }
    cfg = parsed.data;
    if (typeof config === 'object' && config !== null) parsedConfigs.set(config, cfg);
  }
  try {
    return verifyUnsafe(input, cfg, cas);
  } catch (e) {
    if (e instanceof DeadlineExceeded) return result(false, { ...empty, reason: 'timeout' });
    return result(false, {
      ...empty,
      reason: `internal_error: ${e instanceof Error ? e.message : String(e)}`,
    });
  }
}

function verifyUnsafe(input: MathVerifierInput, cfg: ResolvedConfig, cas: Cas): MathVerifierResult {
  const deadline = performance.now() + cfg.timeout_ms;
  const response =
    typeof input.response === 'string'
      ? input.response.slice(-cfg.max_response_chars)
      : String(input.response ?? '');
  const reference = typeof input.reference === 'string' ? input.reference : String(input.reference ?? '');

  const gold = parseReference(reference, cfg.extraction_order);
  let first: Candidate | null = null;
  let pred: ParsedAnswer | null = null;
  for (const c of candidates(response, cfg.extraction_order)) {
    if (performance.now() > deadline) throw new DeadlineExceeded();
    first ??= c;
    const p = parseCandidate(c.text, c.percent);
    if (p) {
      pred = { node: p.node, candidate: c, units: p.units };
      break;
    }
  }

  const details: MathVerifierDetails = {
    extracted: pred?.candidate?.text ?? first?.text ?? null,
    strategy: pred?.candidate?.strategy ?? first?.strategy ?? null,
    normalized_response: pred ? show(pred.node) : null,
    normalized_reference: gold ? show(gold.node) : null,
    rule: 'none',
  };
  const units = [...(gold?.units ?? []), ...(pred?.units ?? [])];
  if (units.length > 0) details.units_stripped = units;

  if (first === null) return result(false, { ...details, reason: 'no_answer_found' });

  if (gold && pred) {
    const options: CompareOptions = {
      floatRounding: cfg.float_rounding,
      cas,
      strictVariables: cfg.strict_variables,
      allowSetRelationComparison: cfg.allow_set_relation_comparison,
      deadline,
      maxCasNodes: cfg.max_cas_nodes,
    };
    let verdict = compareNodes(gold.node, pred.node, options);
    if (!verdict.equal && gold.alternative) {
      const second = compareNodes(gold.alternative, pred.node, options);
      if (second.equal) verdict = { equal: true, rule: `${second.rule}_decimal_comma` };
    }
    if (verdict.equal) return result(true, { ...details, rule: verdict.rule });
    // Math-Verify also compares the first matched string verbatim (its "first_match" fallback).
    if (first.text.trim() === reference.trim()) return result(true, { ...details, rule: 'raw_string' });
    return result(false, { ...details, rule: verdict.rule, reason: 'not_equivalent' });
  }
  // Either side unparseable: fall back to comparing normalised strings.
  const a = normalizeAnswer(first.text).text.replace(/\s+/g, '');
  const b = normalizeAnswer(reference).text.replace(/\s+/g, '');
  if (a !== '' && a === b)
    return result(true, { ...details, extracted: first.text, rule: 'normalized_string' });
  return result(false, {
    ...details,
    extracted: first.text,
    rule: 'normalized_string',
    reason: gold ? 'response_unparseable' : 'reference_unparseable',
  });
}
