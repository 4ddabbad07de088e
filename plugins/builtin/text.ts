// Answer extraction and string normalisation shared by the exact, regex and choice verifiers.

/** Contents of every `\boxed{…}` / `\fbox{…}` with balanced braces, in order of appearance. */
export function boxedContents(text: string): string[] {
  const out: string[] = [];
  const re = /\\(?:boxed|fbox)\s*\{/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    let depth = 1;
    let i = re.lastIndex;
    for (; i < text.length && depth > 0; i++) {
      if (text[i] === '{') depth++;
      else if (text[i] === '}') depth--;
    }
    if (depth === 0) out.push(text.slice(re.lastIndex, i - 1));
  }
  return out;
}

const ANSWER_PHRASE = /(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?\s*(.+)/gi;

export type ExtractMode = 'auto' | 'boxed' | 'answer_phrase' | 'last_line' | 'whole';

/**
 * The answer text of a response. `auto`: the last \boxed{}, else the text after the last
 * "answer is / answer:" phrase (to the end of its line), else the last non-empty line.
 * Returns null when the requested form is absent.
 */
export function extractAnswer(
  response: string,
  mode: ExtractMode,
): { text: string; from: ExtractMode } | null {
  const boxed = () => {
    const all = boxedContents(response);
    return all.length > 0 ? { text: all[all.length - 1], from: 'boxed' as const } : null;
  };
  const phrase = () => {
    let last: string | null = null;
    for (const m of response.matchAll(ANSWER_PHRASE)) last = m[1];
    return last === null ? null : { text: last, from: 'answer_phrase' as const };
  };
  const lastLine = () => {
    const lines = response.split(/\r?\n/).filter((l) => l.trim() !== '');
    return lines.length > 0 ? { text: lines[lines.length - 1], from: 'last_line' as const } : null;
  };
  switch (mode) {
    case 'boxed':
      return boxed();
    case 'answer_phrase':
      return phrase();
    case 'last_line':
      return lastLine();
    case 'whole':
      return { text: response, from: 'whole' };
    case 'auto':
      return boxed() ?? phrase() ?? lastLine();
  }
}

export interface NormalizeOptions {
  caseSensitive: boolean;
  /** Strip $…$, \text{…}, **bold**, quotes and trailing punctuation. */
  stripFormatting: boolean;
}

/** NFKC, collapse whitespace, and (by option) lowercase and strip formatting around the answer. */
export function normalizeText(text: string, options: NormalizeOptions): string {
  let t = text.normalize('NFKC').replace(/\s+/g, ' ').trim();
  if (options.stripFormatting) {
    for (let previous = ''; previous !== t; ) {
      previous = t;
      t = t
        .replace(/^\$+|\$+$/g, '')
        .replace(/^\\\(|\\\)$/g, '')
        .replace(/^\\text(?:bf|rm|it)?\{([^{}]*)\}$/, '$1')
        .replace(/^\*\*(.*)\*\*$/, '$1')
        .replace(/^["'`“‘](.*)["'`”’]$/, '$1')
        .replace(/[.。!;,]+$/, '')
        .trim();
    }
  }
  return options.caseSensitive ? t : t.toLowerCase();
}
