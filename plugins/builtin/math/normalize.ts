// String-level clean-up of an extracted answer before parsing: LaTeX spacing and styling
// commands, fraction variants, degrees, units, currency, percent words, trailing punctuation.
// Everything that does not change the mathematical value goes here; the parser sees the rest.

const UNICODE: [RegExp, string][] = [
  [/[−–—]/g, '-'],
  [/×/g, '\\times '],
  [/·/g, '\\cdot '],
  [/÷/g, '\\div '],
  [/≤|⩽/g, '\\le '],
  [/≥|⩾/g, '\\ge '],
  [/≠/g, '\\ne '],
  [/∞/g, '\\infty '],
  [/π/g, '\\pi '],
  [/√/g, '\\sqrt'],
  [/∪/g, '\\cup '],
  [/∈/g, '\\in '],
  [/±/g, '\\pm '],
  [/°/g, '^\\circ'],
  [/α/g, '\\alpha '],
  [/β/g, '\\beta '],
  [/γ/g, '\\gamma '],
  [/θ/g, '\\theta '],
  [/λ/g, '\\lambda '],
  [/μ/g, '\\mu '],
  [/σ/g, '\\sigma '],
  [/φ/g, '\\phi '],
  [/ω/g, '\\omega '],
  [/\u00a0/g, ' '],
];

/**
 * Unit words stripped after a number ("10 cm", "\text{ meters}"). Our own list of common
 * measurement and counting units; single letters are excluded on purpose (they are variables).
 */
const UNIT_WORDS = [
  'km',
  'cm',
  'mm',
  'meters?',
  'metres?',
  'kilometers?',
  'centimeters?',
  'millimeters?',
  'inch(?:es)?',
  'in\\.',
  'feet',
  'foot',
  'ft',
  'yards?',
  'yd',
  'miles?',
  'mi',
  'mph',
  'km/h',
  'kmh',
  'kg',
  'grams?',
  'mg',
  'pounds?',
  'lbs?',
  'ounces?',
  'oz',
  'liters?',
  'litres?',
  'ml',
  'mL',
  'gallons?',
  'gal',
  'seconds?',
  'secs?',
  'minutes?',
  'mins?',
  'hours?',
  'hrs?',
  'days?',
  'weeks?',
  'months?',
  'years?',
  'yrs?',
  'dollars?',
  'cents?',
  'euros?',
  'units?',
  'sq(?:uare)? units?',
  'square (?:feet|meters?|inches|units|cm|miles)',
  'cubic (?:feet|meters?|inches|units|cm)',
  'sq ?(?:ft|m|cm|in)',
  'degrees?',
  'deg',
  'radians?',
  'rad',
  'people',
  'persons?',
  'students?',
  'apples?',
  'marbles?',
  'balls?',
  'books?',
  'boxes',
  'cookies?',
  'coins?',
  'cars?',
  'ways?',
  'times',
  'points?',
  'pages?',
  'tickets?',
  'items?',
  'pieces?',
  'trees?',
  'eggs?',
  'bags?',
  'pens?',
  'pencils?',
  'candies',
  'candy',
  'stamps?',
  'games?',
  'hats?',
  'shirts?',
  'friends?',
  'children',
  'kids?',
  'men',
  'women',
  'boys?',
  'girls?',
  'chairs?',
  'tables?',
  'rows?',
  'sides?',
  'edges?',
  'vertices',
  'faces?',
  'digits?',
  'numbers?',
  'integers?',
  'teams?',
  'rounds?',
  'steps?',
  'moves?',
  'votes?',
  'laps?',
  'cups?',
  'slices?',
  'bottles?',
  'hours? per day',
];

/** A unit word after a number inside a list or set: "\{35 cm, 4\}". */
const UNITS_IN_ITEM = new RegExp(
  `(\\d)\\s*(?:\\\\(?:text|mathrm|mbox)\\s*\\{\\s*(?:${UNIT_WORDS.join('|')})\\s*\\}|(?:${UNIT_WORDS.join('|')}))(?=\\s*(?:,|;|\\\\?\\}|\\)|\\]))`,
  'g',
);
const UNITS_TAIL = new RegExp(`(\\d|\\}|\\))\\s*(?:${UNIT_WORDS.join('|')})(?:\\^?\\{?[23]\\}?)?\\s*$`);
const TEXT_TAIL =
  /(\d|\}|\)|\s)\s*\\(?:text|textbf|textit|mbox|mathrm|textrm|textnormal|operatorname)\s*\{([^{}]*)\}(?:\s*\^\s*\{?[23]\}?)?\s*$/;

export interface Normalized {
  text: string;
  /** Units or currency that were stripped (reported in details only). */
  strippedUnits: string[];
}

export function normalizeAnswer(raw: string): Normalized {
  let s = raw;
  const strippedUnits: string[] = [];
  for (const [re, rep] of UNICODE) s = s.replace(re, rep);
  // JSON-escaped generations write \\frac; matrices need their \\ row separators
  if (!/matrix|array/.test(s)) s = s.replace(/\\\\(?=[a-zA-Z])/g, '\\');
  // 11,\! 111,\! 100 is one number
  s = s.replace(/(\d),\s*\\!\s*(?=\d{3})/g, '$1,');

  s = s
    .replace(/\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits)\b/g, '')
    .replace(/\\(?:big|Big|bigg|Bigg)[lrm]?(?![a-zA-Z])/g, '')
    .replace(/\\left\s*\.|\\right\s*\./g, '')
    .replace(/\\(?:left|right)(?![a-zA-Z])/g, '')
    .replace(/\\[dtc]frac(?![a-zA-Z])/g, '\\frac')
    .replace(/\\[dt]binom(?![a-zA-Z])/g, '\\binom')
    // thin/negative spaces: `10,\!000` and `1\,000` are thousands separators, not lists
    .replace(/(?<!\\)\\[!,;:>](?![a-zA-Z])/g, '')
    .replace(/\{,\}/g, ',')
    .replace(/\\q?quad(?![a-zA-Z])/g, ' ')
    // other spacing macros: \thinspace, \enspace, \hspace{1em}, \phantom{0}, ...
    .replace(/\\(?:[hv]space\*?|phantom|hphantom|vphantom)\s*\{[^{}]*\}/g, ' ')
    .replace(
      /\\(?:thinspace|negthinspace|medspace|negmedspace|thickspace|negthickspace|enspace|enskip|quad)(?![a-zA-Z])/g,
      ' ',
    )
    .replace(/(?<!\\)\\ /g, ' ')
    .replace(/~/g, ' ')
    .replace(/\\\$/g, '')
    .replace(/\$/g, '')
    .replace(/\\(?:euro|pounds|yen)(?![a-zA-Z])/g, '')
    .replace(/[€£¥₹]/g, '')
    // degrees: ^\circ, ^{\circ}, \degree
    .replace(/\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![a-zA-Z])|\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])/g, '')
    .replace(/\\%/g, '%')
    .replace(/\\text\s*\{\s*(?:percent|percentage|pct)\s*\}/g, '%')
    .replace(/\s*\b(?:percent|percentage|pct)\b/g, '%')
    .replace(/\\text\s*\{\s*\}/g, '')
    .replace(/,?\s*\\(?:text|mbox|mathrm)\s*\{\s*(?:and|or)\s*\}/g, ',')
    // "W(x)=1orW(x)=-1": a join glued to its neighbours
    .replace(/(?<=[\d)}])(?:or|and)(?=[a-zA-Z(\\])/g, ', ')
    .replace(/,?\s*\b(?:and|or)\b\s*/g, ', ')
    .replace(/,(?:\s*,)+/g, ',')
    .replace(/,?\s*\\[lc]?dots(?![a-zA-Z])/g, '')
    .replace(/\\(?:hline|newline)(?![a-zA-Z])/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();

  s = stripTrailingPunctuation(s);
  if (/[,;]/.test(s)) s = s.replace(UNITS_IN_ITEM, (_, digit: string) => digit);

  // units: a trailing \text{...} after a number, then trailing unit words (twice: "5 \text{cm}^2" etc.)
  for (let i = 0; i < 2; i++) {
    const t = TEXT_TAIL.exec(s);
    if (t && isUnitText(t[2] ?? '')) {
      const rest = s.slice(0, t.index + (t[1] ?? '').length).trim();
      if (rest !== '') {
        strippedUnits.push((t[2] ?? '').trim());
        s = stripTrailingPunctuation(rest);
      }
    }
    const u = UNITS_TAIL.exec(s);
    if (u) {
      const rest = s.slice(0, u.index + (u[1] ?? '').length).trim();
      if (rest !== '' && /\d/.test(rest)) {
        strippedUnits.push(s.slice(rest.length).trim());
        s = stripTrailingPunctuation(rest);
      }
    }
  }
  return { text: s, strippedUnits };
}

/**
 * A trailing \text{...} is dropped only when it reads as a unit ("cm", "m/s", "square feet"): a
 * condition or a qualifier ("if n is odd", "or more") changes the answer, so it stays and the
 * answer no longer equals a bare number. "e" and "i" are constants, not units.
 */
const NOT_UNIT_WORDS =
  /\b(?:if|or|and|more|less|than|least|most|when|where|for|otherwise|unless|except|not|only|all|any|each|every|is|are|none|no|never|always)\b/i;

function isUnitText(text: string): boolean {
  const t = text.trim();
  return t !== 'e' && t !== 'i' && /^[a-zA-Z][a-zA-Z\s/^.·\-\d]*$/.test(t) && !NOT_UNIT_WORDS.test(t);
}

function stripTrailingPunctuation(s: string): string {
  let out = s.trim();
  for (;;) {
    const next = out.replace(/(?:\\\.|[.,;:])\s*$/, '').trim();
    if (next === out) return out;
    out = next;
  }
}
