// Answer extraction from a model response. Strategies are grouped into tiers tried in order;
// within a tier the rightmost match is tried first (as Math-Verify does), and the first
// candidate that parses wins. Extraction never throws.

import { looksLikeProse } from './parse';

export type Strategy = 'boxed' | 'final_answer' | 'answer' | 'latex' | 'number' | 'whole';

export const STRATEGIES: readonly Strategy[] = [
  'boxed',
  'final_answer',
  'answer',
  'latex',
  'number',
  'whole',
];

/** Math-Verify's default priorities: boxed and "final answer is" share a tier. */
export const DEFAULT_EXTRACTION_ORDER: Strategy[][] = [
  ['boxed', 'final_answer'],
  ['answer'],
  ['latex', 'number'],
  ['whole'],
];

export interface Candidate {
  strategy: Strategy;
  start: number;
  end: number;
  /** The answer text, still LaTeX/plain, without $ delimiters or \boxed. */
  text: string;
  /** A percent sign/word right after the match ("$\boxed{28}$ pct"). */
  percent: boolean;
}

const PERCENT_AFTER = /^\s*\$?\s*(?:\\?%|percentage\b|percent\b|pct\b)/;

function percentAfter(s: string, end: number): boolean {
  return PERCENT_AFTER.test(s.slice(end, end + 16));
}

/** Balanced-brace end for s[open] === '{'; -1 when unbalanced. */
export function matchBrace(s: string, open: number): number {
  let depth = 0;
  for (let j = open; j < s.length; j++) {
    const c = s[j];
    if (c === '\\') {
      j++;
      continue;
    }
    if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return j;
  }
  return -1;
}

interface Box {
  start: number;
  end: number;
  content: string;
}

function findBoxes(s: string): Box[] {
  const boxes: Box[] = [];
  const re = /\\(?:boxed|fbox)\s*\{/g;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    const open = m.index + m[0].length - 1;
    const close = matchBrace(s, open);
    if (close < 0) {
      // unterminated last box: take the rest (truncated generations)
      boxes.push({ start: m.index, end: s.length, content: s.slice(open + 1) });
      break;
    }
    boxes.push({ start: m.index, end: close + 1, content: s.slice(open + 1, close) });
    re.lastIndex = close + 1;
  }
  return boxes;
}

const SEPARATOR = /(?:^|[^a-zA-Z])(?:and|or)(?:[^a-zA-Z]|$)|[,;]/;
const CORRECTION =
  /\b(?:but|however|thus|hence|so|therefore|actually|wait|instead|correct(?:ion|ed)?|mistake|wrong|not|no)\b/i;

/** What may stand between two boxes of one answer: joining words, spacing, delimiters. */
const JOINERS =
  /\\(?:q?quad|[,;:! ()[\]]|enspace|thinspace)|\\(?:text|mbox|mathrm)\s*\{\s*(?:and|or)?\s*\}|\b(?:and|or)\b/g;

function boxedCandidates(s: string): Candidate[] {
  const boxes = findBoxes(s);
  const out: Candidate[] = [];
  // Consecutive boxes joined by "and"/","/";" form one multi-part answer (\boxed{1} and \boxed{2}).
  let i = boxes.length - 1;
  while (i >= 0) {
    let first = i;
    while (first > 0) {
      const between = s.slice(boxes[first - 1]!.end, boxes[first]!.start);
      // joined by nothing, by "and"/"or"/","/";" ("\boxed{1} papers and \boxed{2} bins"), spacing or
      // symbols ("\boxed{35} +++ \boxed{4}"); never across a correction or a conclusion
      // ("\boxed{1} thus but \boxed{2} and \boxed{3}" answers 2, 3)
      const joined =
        between.trim() === '' ||
        (between.length < 70 &&
          !/\n\s*\n/.test(between) &&
          !CORRECTION.test(between) &&
          (SEPARATOR.test(between) || !/[a-zA-Z0-9]/.test(between.replace(JOINERS, ''))));
      if (joined) first--;
      else break;
    }
    const group = boxes.slice(first, i + 1);
    const last = group.at(-1)!;
    out.push({
      strategy: 'boxed',
      start: group[0]!.start,
      end: last.end,
      text: group.map((b) => b.content.trim()).join(', '),
      percent: percentAfter(s, last.end),
    });
    i = first - 1;
  }
  return out;
}

interface Env {
  start: number;
  end: number;
  content: string;
}

// Display and \( \) environments are bounded (4,000 characters) so that many unclosed openers
// cost linear time, not a scan to the end of the text for each. One capture group per part.
const ENV_PARTS = [
  String.raw`\$\$([\s\S]{1,4000}?)\$\$`,
  String.raw`\\\[([\s\S]{1,4000}?)\\\]`,
  String.raw`(?<![\\\d])\$((?:\\\$|[^\n$])+?)\$`,
  String.raw`\\\(([\s\S]{1,4000}?)\\\)`,
  String.raw`(?<![\\\w}])(-?\\frac\{-?\d+(?:\.\d+)?\}\{-?\d+(?:\.\d+)?\})`,
];

// The parts whose closing delimiter is absent from the text are replaced by a never-matching
// group: an opener that cannot be closed would otherwise be scanned 4,000 characters each time.
const envRegexes = new Map<string, RegExp>();

function envRegexFor(s: string): RegExp {
  const present = [s.includes('$$'), s.includes('\\]'), true, s.includes('\\)'), true];
  const key = present.map(Number).join('');
  let re = envRegexes.get(key);
  if (re === undefined) {
    re = new RegExp(ENV_PARTS.map((part, i) => (present[i] ? part : '(?!)()')).join('|'), 'g');
    envRegexes.set(key, re);
  }
  return re;
}

function findEnvs(s: string): Env[] {
  const envs: Env[] = [];
  const re = envRegexFor(s);
  re.lastIndex = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    const content = m[1] ?? m[2] ?? m[3] ?? m[4] ?? m[5] ?? '';
    // \( on its own line ... \) on its own line is not inline math (see BROKEN_INLINE)
    if (m[4] !== undefined && /^[ \t]*\n[\s\S]*\n[ \t]*$/.test(content)) continue;
    if (content.trim() !== '') envs.push({ start: m.index, end: m.index + m[0].length, content });
  }
  return envs;
}

const ENV_JOIN = /^\s*(?:,?\s*(?:and|or)|,)\s*$/;

/** Latex environments, chained when joined by "and"/"or"/"," ($1$ and $2$ -> "1, 2"). */
function latexCandidates(s: string, envs: Env[]): Candidate[] {
  const out: Candidate[] = [];
  for (let i = 0; i < envs.length; i++) {
    let j = i;
    while (j + 1 < envs.length && j - i < 5 && ENV_JOIN.test(s.slice(envs[j]!.end, envs[j + 1]!.start))) j++;
    const group = envs.slice(i, j + 1);
    out.push({
      strategy: 'latex',
      start: group[0]!.start,
      end: group.at(-1)!.end,
      text: group.map((e) => e.content.trim()).join(', '),
      percent: percentAfter(s, group.at(-1)!.end),
    });
    // also offer the single env on its own (tried after the longer chain ending at the same place)
    if (j > i) out.push({ ...out.at(-1)!, start: envs[j]!.start, text: envs[j]!.content.trim() });
  }
  return out;
}

const NUMBER_RE =
  /(?:^|(?<=[\s=$€£¥*]))(-?(?:[1-9]\d{0,2}(?:[ ,]\d{3})+(?:\.\d+)?|\d+[.,]\d+|\d+)(?:\s*\/\s*\d+)?|-?\.\d+)(\s*(?:%|percent\b|percentage\b|pct\b))?(?!\d)/g;

/**
 * Inline `$`/`\(` delimiters whose opening ends its line and whose closing starts its line
 * ("$\n9\n$") are not math in Math-Verify and not an answer here: numbers inside are skipped.
 */
const BROKEN_INLINE =
  /(?<![\\$])\$[ \t]*\n[^$]{0,2000}?\n[ \t]*\$(?!\$)|\\\([ \t]*\n[\s\S]{0,2000}?\n[ \t]*\\\)/g;
const BROKEN_INLINE_HINT = /(?:\$|\\\()[ \t]*\n/;

let brokenCache: { text: string; spans: [number, number][] } = { text: '', spans: [] };

/** Computed once per response (the anchored strategies ask for numbers many times). */
function brokenInlineSpans(s: string): [number, number][] {
  if (brokenCache.text === s) return brokenCache.spans;
  const spans: [number, number][] = [];
  if (BROKEN_INLINE_HINT.test(s) && (s.includes('\\)') || /\n[ \t]*\$/.test(s))) {
    BROKEN_INLINE.lastIndex = 0;
    for (let m = BROKEN_INLINE.exec(s); m !== null; m = BROKEN_INLINE.exec(s))
      spans.push([m.index, m.index + m[0].length]);
  }
  brokenCache = { text: s, spans };
  return spans;
}

function numberCandidates(s: string, from = 0, to = s.length): Candidate[] {
  const out: Candidate[] = [];
  const slice = s.slice(from, to);
  const broken = brokenInlineSpans(s);
  NUMBER_RE.lastIndex = 0;
  for (let m = NUMBER_RE.exec(slice); m !== null; m = NUMBER_RE.exec(slice)) {
    const at = from + m.index;
    if (broken.some(([a, b]) => at >= a && at < b)) continue;
    // "1 000" and "1,234" are thousands; "2,74" and "0,111" are decimal commas (as Math-Verify reads them)
    const raw = m[1]!;
    const text = /^-?[1-9]\d{0,2}(?:[ ,]\d{3})+(?:\.\d+)?$/.test(raw)
      ? raw.replace(/[ ,]/g, '')
      : raw.replace(',', '.');
    out.push({
      strategy: 'number',
      start: from + m.index,
      end: from + m.index + m[0].length,
      text,
      percent: m[2] !== undefined,
    });
  }
  return out;
}

/** The first latex env (or chain) starting within `window` chars after `pos`. */
function envAfter(s: string, pos: number, window: number, envs: Env[], strategy: Strategy): Candidate | null {
  let lo = 0;
  let hi = envs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (envs[mid]!.start < pos) lo = mid + 1;
    else hi = mid;
  }
  if (lo >= envs.length || envs[lo]!.start - pos > window) return null;
  const first = latexCandidates(s, envs.slice(lo, lo + 6))[0];
  return first ? { ...first, strategy } : null;
}

const MAX_ANCHORS = 32;

const FINAL_ANSWER_RE = /final answer[^\n]{0,100}?\s+is\s*:?\s*|final answer\s*:\s*/gi;
const ANSWER_RE = /\banswer\b\s*(?:is\s*)?:?\s*/gi;

function anchoredCandidates(
  s: string,
  re: RegExp,
  strategy: Strategy,
  envs: Env[],
  window: number,
): Candidate[] {
  const out: Candidate[] = [];
  const anchors: number[] = [];
  re.lastIndex = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) anchors.push(m.index + m[0].length);
  // the rightmost anchors decide; bounding them keeps "answer answer answer ..." linear
  for (const pos of anchors.slice(-MAX_ANCHORS)) {
    const env = envAfter(s, pos, window, envs, strategy);
    if (env) {
      out.push(env);
      continue;
    }
    const box = /^\s*\\(?:boxed|fbox)\s*\{/.exec(s.slice(pos, pos + 64));
    if (box) continue; // covered by the boxed strategy
    // plain text: up to end of line / sentence, after the last '=' (answer: 2 + 3 = 5)
    const lineEnd = s.slice(pos, pos + 150).indexOf('\n');
    let end = lineEnd < 0 ? Math.min(s.length, pos + 150) : pos + lineEnd;
    const hope = s.slice(pos, end).search(/\.\s+I hope|\.\s+[A-Z]|\.\s*$/);
    if (hope >= 0) end = pos + hope;
    end = Math.min(end, pos + 150);
    let segStart = pos;
    const lastEq = s.slice(pos, end).lastIndexOf('=');
    if (lastEq >= 0) segStart = pos + lastEq + 1;
    const text = s.slice(segStart, end).trim();
    if (text !== '') {
      if (!looksLikeProse(text)) out.push({ strategy, start: segStart, end, text, percent: false });
      // and the numbers inside it, for "The answer is 42 apples because ..."
      const nums = numberCandidates(s, segStart, end);
      if (nums[0]) out.push({ ...nums[0], strategy, start: segStart, end: nums[0].end });
    }
  }
  return out;
}

export function findCandidates(response: string, strategy: Strategy, envs: Env[]): Candidate[] {
  switch (strategy) {
    case 'boxed':
      return boxedCandidates(response);
    case 'final_answer':
      return anchoredCandidates(response, FINAL_ANSWER_RE, 'final_answer', envs, 10);
    case 'answer':
      return anchoredCandidates(response, ANSWER_RE, 'answer', envs, 50);
    case 'latex':
      return latexCandidates(response, envs);
    case 'number': {
      const numbers = numberCandidates(response);
      // a one-line answer written as equations ("W(x)=1 or W(x)=-1") or as one expression
      // ("10\sqrt3 + \sqrt{4}", "\frac{3}{4}i") is read whole, not as its last number or fraction
      const t = response.trim();
      if (t.length <= 120 && !t.includes('\n') && !t.includes('$') && isOneLineMath(t))
        numbers.push({ strategy: 'number', start: 0, end: response.length, text: t, percent: false });
      return numbers;
    }
    case 'whole': {
      const t = response.trim();
      return t.length > 0 && t.length <= 300 && !looksLikeProse(t)
        ? [{ strategy: 'whole', start: 0, end: response.length, text: t, percent: false }]
        : [];
    }
  }
}

/** Equations, or one expression with an operator or a command (not a list, not "5 7"). */
function isOneLineMath(t: string): boolean {
  if (looksLikeProse(t) || /\\(?:boxed|fbox)/.test(t)) return false;
  return /=/.test(t) || (/[\\^+*/]/.test(t) && !t.includes(',') && !/\d\s+\d/.test(t));
}

/**
 * All candidates, tier by tier, rightmost first within a tier. Lazily generated so a boxed
 * answer never pays for scanning numbers.
 */
export function* candidates(
  response: string,
  order: readonly (Strategy | readonly Strategy[])[],
): Generator<Candidate> {
  let envs: Env[] | null = null;
  for (const tier of order) {
    const strategies = typeof tier === 'string' ? [tier] : tier;
    const found: Candidate[] = [];
    for (const st of strategies) {
      if (st === 'latex' || st === 'answer' || st === 'final_answer') envs ??= findEnvs(response);
      found.push(...findCandidates(response, st, envs ?? []));
    }
    found.sort((a, b) => b.end - a.end || a.start - b.start);
    yield* found;
  }
}
