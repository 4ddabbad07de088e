// A small LaTeX/plain-math parser for final answers (not a general LaTeX engine): numbers,
// arithmetic, \frac/\sqrt/functions, sets, tuples, intervals, unions, relations and matrices.
// Input is the output of normalizeAnswer(); failures throw ParseError, which callers catch.

import { type Node, type RelOp, rat, ratFromDecimal } from './ast';

export class ParseError extends Error {}

type Tok =
  | { t: 'num'; v: string }
  | { t: 'id'; v: string } // single letter or a known word (sin, pi, ...)
  | { t: 'cmd'; v: string } // \name
  | { t: 'op'; v: string } // + - * / ^ _ ( ) [ ] { } , ; = < > ! % | & \\ ' <= >= != \{ \}
  | { t: 'matrix'; rows: string[][] }
  | { t: 'text'; v: string };

const WORDS = new Set([
  'sqrt',
  'sin',
  'cos',
  'tan',
  'sec',
  'csc',
  'cot',
  'arcsin',
  'arccos',
  'arctan',
  'sinh',
  'cosh',
  'tanh',
  'log',
  'ln',
  'exp',
  'pi',
  'inf',
  'infty',
  'infinity',
  'oo',
  'abs',
]);

const GREEK = new Set(
  'alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi rho sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi Psi Omega'.split(
    ' ',
  ),
);

const FUNCS = new Set([
  'sin',
  'cos',
  'tan',
  'sec',
  'csc',
  'cot',
  'arcsin',
  'arccos',
  'arctan',
  'sinh',
  'cosh',
  'tanh',
  'ln',
  'log',
  'exp',
  'det',
  'gcd',
  'lcm',
  'max',
  'min',
  'abs',
]);

const STYLE_CMDS = new Set([
  'mathbf',
  'boldsymbol',
  'mathit',
  'mathsf',
  'mathtt',
  'mathcal',
  'bm',
  'vec',
  'overline',
  'hat',
  'widehat',
  'tilde',
  'bar',
  'underline',
  'mathring',
]);
const TEXT_CMDS = new Set([
  'text',
  'textbf',
  'textit',
  'textrm',
  'textnormal',
  'mathrm',
  'mbox',
  'operatorname',
  'textsf',
]);

/** Reads a balanced {...} group starting at s[i] === '{'; returns [content, indexAfter]. */
function readBraced(s: string, i: number): [string, number] {
  let depth = 0;
  for (let j = i; j < s.length; j++) {
    const c = s[j];
    if (c === '\\') {
      j++;
      continue;
    }
    if (c === '{') depth++;
    else if (c === '}') {
      depth--;
      if (depth === 0) return [s.slice(i + 1, j), j + 1];
    }
  }
  throw new ParseError('unbalanced braces');
}

export function tokenize(s: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  let depth = 0; // inside ( [ \{ a comma separates items: (12,102) is an interval
  while (i < s.length) {
    const c = s[i]!;
    if (c === '(' || c === '[') depth++;
    else if ((c === ')' || c === ']') && depth > 0) depth--;
    else if (c === '\\' && s[i + 1] === '{') depth++;
    else if (c === '\\' && s[i + 1] === '}' && depth > 0) depth--;
    if (c === ' ' || c === '\n' || c === '\t') {
      i++;
      continue;
    }
    if (/[0-9]/.test(c)) {
      // times of day and ratios (12:00, 7:32) are labels, not products: 12:00 must not equal 1:00
      const clock = /^\d+:\d+(?::\d+)?/.exec(s.slice(i));
      if (clock) {
        out.push({ t: 'text', v: clock[0] });
        i += clock[0].length;
        continue;
      }
      // a numeral in another base: 204_5, 1011_{2} (the digits must be valid in that base)
      // (letters only as upper-case digits above base 10: 10a_{12} is 10 times a_{12})
      const based = /^([0-9A-Z]+)_\{?\s*(\d{1,2})\s*\}?/.exec(s.slice(i));
      if (based && (/^\d+$/.test(based[1]!) || Number(based[2]) > 10)) {
        const value = numeralValue(based[1]!, Number(based[2]));
        if (value !== null) {
          out.push({ t: 'num', v: value });
          i += based[0].length;
          continue;
        }
      }
    }
    if (/[0-9.]/.test(c)) {
      // thousands separators (1,234,567) only when every group has exactly 3 digits
      const m =
        (depth === 0 ? /^\d{1,3}(?:,\d{3})+(?![\d])(?:\.\d+)?/.exec(s.slice(i)) : null) ??
        /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(s.slice(i));
      if (!m || m[0] === '.') throw new ParseError(`unexpected '${c}'`);
      let v = m[0];
      if (/[eE]/.test(v) && !/[eE][+-]?\d/.test(v)) v = v.replace(/[eE].*$/, '');
      // "3." at the end of a number is punctuation, not a decimal point
      if (v.endsWith('.') && v.length > 1) v = v.slice(0, -1);
      out.push({ t: 'num', v: v.replace(/,/g, '') });
      i += v.length;
      continue;
    }
    if (/[a-zA-Z]/.test(c)) {
      const m = /^[a-zA-Z]+/.exec(s.slice(i))!;
      const word = m[0];
      if (WORDS.has(word.toLowerCase()) && word.length > 1) {
        out.push({ t: 'id', v: word.toLowerCase() });
      } else {
        for (const ch of word) out.push({ t: 'id', v: ch });
      }
      i += word.length;
      continue;
    }
    if (c === '\\') {
      const m = /^\\([a-zA-Z]+|.)/.exec(s.slice(i));
      if (!m) throw new ParseError('dangling backslash');
      const name = m[1]!;
      i += m[0].length;
      if (name === 'begin') {
        const env = /^\s*\{([a-zA-Z*]+)\}/.exec(s.slice(i));
        if (!env) throw new ParseError('\\begin without environment');
        i += env[0].length;
        const endTag = `\\end{${env[1]}}`;
        const end = s.indexOf(endTag, i);
        if (end < 0) throw new ParseError(`missing ${endTag}`);
        let body = s.slice(i, end);
        i = end + endTag.length;
        if (/^(?:p|b|B|v|V|small)?matrix$|^array$/.test(env[1]!)) {
          if (env[1] === 'array') body = body.replace(/^\s*\{[^}]*\}/, '');
          const rows = body
            .split(/\\\\/)
            .map((r) => r.trim())
            .filter((r) => r !== '' && r !== '\\hline')
            .map((r) => r.split('&').map((cell) => cell.trim()));
          out.push({ t: 'matrix', rows });
          continue;
        }
        throw new ParseError(`unsupported environment ${env[1]}`);
      }
      if (TEXT_CMDS.has(name)) {
        const j = skipSpaces(s, i);
        if (s[j] !== '{') throw new ParseError(`\\${name} without argument`);
        const [content, after] = readBraced(s, j);
        i = after;
        const inner = content.trim();
        if (/^[a-zA-Z]$/.test(inner) && name !== 'operatorname') {
          // \mathrm{e}, \text{i}, \mathrm{d}: one letter is the letter itself (Euler's e, the unit i)
          out.push({ t: 'id', v: inner });
        } else if (name === 'operatorname' || /^[a-zA-Z]+$/.test(inner)) {
          if (FUNCS.has(inner) || WORDS.has(inner)) out.push({ t: 'cmd', v: inner });
          else out.push({ t: 'text', v: inner });
        } else if (inner !== '') {
          // \mathrm{(A)} or \text{3} : tokenize the content itself
          out.push(...tokenize(inner));
        }
        continue;
      }
      if (name === 'mathbb') {
        const j = skipSpaces(s, i);
        const [content, after] = s[j] === '{' ? readBraced(s, j) : [s[j] ?? '', j + 1];
        i = after;
        out.push({ t: 'text', v: `\\mathbb{${content.trim()}}` });
        continue;
      }
      if (STYLE_CMDS.has(name)) continue; // \mathbf{v} -> {v}
      out.push(...commandToken(name));
      continue;
    }
    const two = s.slice(i, i + 2);
    if (two === '<=' || two === '>=' || two === '!=' || two === '=<' || two === '=>') {
      out.push({ t: 'op', v: two === '=<' ? '<=' : two === '=>' ? '>=' : two });
      i += 2;
      continue;
    }
    if (two === '**') {
      out.push({ t: 'op', v: '^' });
      i += 2;
      continue;
    }
    if ("+-*/^_()[]{},;=<>!%|&'".includes(c)) {
      out.push({ t: 'op', v: c });
      i++;
      continue;
    }
    if (c === ':' || c === '?' || c === '"') {
      i++;
      continue;
    }
    throw new ParseError(`unexpected character '${c}'`);
  }
  return out;
}

/** Decimal value of `digits` written in `base` (2-36), or null when a digit is out of range. */
function numeralValue(digits: string, base: number): string | null {
  if (base < 2 || base > 36 || digits.length > 40) return null;
  let value = 0n;
  for (const ch of digits) {
    const d = Number.parseInt(ch, 36);
    if (Number.isNaN(d) || d >= base) return null;
    value = value * BigInt(base) + BigInt(d);
  }
  return value.toString();
}

function skipSpaces(s: string, i: number): number {
  let j = i;
  while (s[j] === ' ') j++;
  return j;
}

function commandToken(name: string): Tok[] {
  switch (name) {
    case 'cdot':
    case 'times':
    case 'ast':
      return [{ t: 'op', v: '*' }];
    case 'div':
      return [{ t: 'op', v: '/' }];
    case 'le':
    case 'leq':
    case 'leqslant':
      return [{ t: 'op', v: '<=' }];
    case 'ge':
    case 'geq':
    case 'geqslant':
      return [{ t: 'op', v: '>=' }];
    case 'lt':
      return [{ t: 'op', v: '<' }];
    case 'gt':
      return [{ t: 'op', v: '>' }];
    case 'ne':
    case 'neq':
      return [{ t: 'op', v: '!=' }];
    case 'approx':
      return [{ t: 'op', v: '~=' }];
    case 'equiv':
    case 'in':
    case 'coloneqq':
      return [{ t: 'op', v: '=' }];
    case '{':
    case 'lbrace':
      return [{ t: 'op', v: '\\{' }];
    case '}':
    case 'rbrace':
      return [{ t: 'op', v: '\\}' }];
    case 'langle':
      return [{ t: 'op', v: '(' }];
    case 'rangle':
      return [{ t: 'op', v: ')' }];
    case 'lvert':
    case 'rvert':
    case 'vert':
    case '|':
      return [{ t: 'op', v: '|' }];
    case '\\':
      return [{ t: 'op', v: ',' }];
    case '%':
      return [{ t: 'op', v: '%' }];
    case 'prime':
      return [{ t: 'op', v: "'" }];
    case 'cup':
      return [{ t: 'op', v: 'cup' }];
    case 'pm':
    case 'mp':
      return [{ t: 'op', v: 'pm' }];
    case 'infty':
    case 'infin':
      return [{ t: 'id', v: 'inf' }];
    case 'pi':
      return [{ t: 'id', v: 'pi' }];
    case 'i':
    case 'imath':
      return [{ t: 'id', v: 'i' }];
    case 'lfloor':
    case 'rfloor':
    case 'lceil':
    case 'rceil':
    case 'to':
    case 'rightarrow':
    case 'Rightarrow':
    case 'implies':
      throw new ParseError(`unsupported command \\${name}`);
    default:
      if (GREEK.has(name)) return [{ t: 'id', v: name }];
      return [{ t: 'cmd', v: name }];
  }
}

/** A symbol named by a command the parser does not know (\zzz), not a letter, Greek letter or x_1. */
export function isUnknownCommand(name: string): boolean {
  return /^[a-zA-Z]{2,}$/.test(name) && !GREEK.has(name);
}

const REL_OPS = new Set(['=', '<', '<=', '>', '>=', '!=', '~=']);

/** Parses a normalised answer string into a Node. */
export function parseAnswer(s: string, maxTokens = 2000): Node {
  if (s.length > 20_000) throw new ParseError(`answer too long (${s.length} characters)`);
  const toks = tokenize(s);
  if (toks.length === 0) throw new ParseError('empty answer');
  if (toks.length > maxTokens) throw new ParseError(`answer too long (${toks.length} tokens)`);
  const p = new Parser(toks);
  const node = p.parseTop();
  if (!p.done()) throw new ParseError(`unexpected '${p.peekText()}'`);
  return node;
}

class Parser {
  private i = 0;
  private absDepth = 0;
  constructor(private readonly toks: Tok[]) {}

  done(): boolean {
    return this.i >= this.toks.length;
  }
  peekText(): string {
    const t = this.toks[this.i];
    return t === undefined ? 'end' : 'v' in t ? t.v : t.t;
  }
  private peek(): Tok | undefined {
    return this.toks[this.i];
  }
  private isOp(v: string, at = this.i): boolean {
    const t = this.toks[at];
    return t !== undefined && t.t === 'op' && t.v === v;
  }
  private expectOp(v: string): void {
    if (!this.isOp(v)) throw new ParseError(`expected '${v}', got '${this.peekText()}'`);
    this.i++;
  }

  parseTop(): Node {
    const items = this.parseSeq(new Set());
    return items.length === 1 ? items[0]! : { k: 'list', items };
  }

  /** comma/semicolon separated items until one of the closers (not consumed). */
  private parseSeq(closers: Set<string>): Node[] {
    const items: Node[] = [];
    for (;;) {
      const t = this.peek();
      if (t === undefined || (t.t === 'op' && closers.has(t.v))) {
        if (items.length === 0) throw new ParseError('empty group');
        return items;
      }
      items.push(this.parseUnion());
      if (this.isOp(',') || this.isOp(';')) {
        this.i++;
        continue;
      }
      const n = this.peek();
      if (n === undefined || (n.t === 'op' && closers.has(n.v))) return items;
      throw new ParseError(`unexpected '${this.peekText()}'`);
    }
  }

  private nesting = 0;

  private parseUnion(): Node {
    // every bracket, brace and argument re-enters here: bound the depth instead of the stack
    if (++this.nesting > 200) throw new ParseError('nesting too deep');
    const node = this.parseUnionInner();
    this.nesting--;
    return node;
  }

  private parseUnionInner(): Node {
    const parts = [this.parseRel()];
    while (this.isOp('cup')) {
      this.i++;
      parts.push(this.parseRel());
    }
    if (parts.length === 1) return parts[0]!;
    // z \in [a, b] \cup [c, d]: the relation binds looser than the union
    const first = parts[0]!;
    if (first.k === 'rel' && parts.slice(1).every((x) => x.k !== 'rel')) {
      const union: Node = { k: 'union', parts: [first.sides.at(-1)!, ...parts.slice(1)] };
      return { ...first, sides: [...first.sides.slice(0, -1), union] };
    }
    return { k: 'union', parts };
  }

  private parseRel(): Node {
    const start = this.i;
    const sides = [this.parseExpr()];
    // g(t) = 3: a one-letter name applied to symbols, on the left of an equation, is a function call
    if (this.isOp('=') && this.isCall(start, this.i)) {
      const name = (this.toks[start] as { v: string }).v;
      const args: Node[] = [];
      for (let j = start + 2; j < this.i - 1; j += 2)
        args.push({ k: 'sym', name: (this.toks[j] as { v: string }).v });
      sides[0] = { k: 'fn', name: `call:${name}`, args };
    }
    const ops: RelOp[] = [];
    for (;;) {
      const t = this.peek();
      if (t?.t === 'op' && REL_OPS.has(t.v)) {
        this.i++;
        ops.push(t.v as RelOp);
        sides.push(this.parseExpr());
      } else break;
    }
    if (ops.length === 0) return sides[0]!;
    // x = 1/3 \approx 0.33: the approximation is commentary; a lone x \approx 2.718 is an equation
    const approx = ops.indexOf('~=' as RelOp);
    if (approx > 0) return { k: 'rel', ops: ops.slice(0, approx), sides: sides.slice(0, approx + 1) };
    return { k: 'rel', ops: ops.map((op) => (op === ('~=' as RelOp) ? '=' : op)), sides };
  }

  /** Tokens [from, to) read `f(x)` or `f(x, y)`: one letter, then symbols in parentheses. */
  private isCall(from: number, to: number): boolean {
    const t = this.toks;
    if (to - from < 4 || t[from]?.t !== 'id' || !/^[a-zA-Z]$/.test((t[from] as { v: string }).v))
      return false;
    if (!this.isOp('(', from + 1) || !this.isOp(')', to - 1)) return false;
    for (let j = from + 2; j < to - 1; j++) {
      const x = t[j]!;
      const ok = (j - from) % 2 === 0 ? x.t === 'id' && /^[a-zA-Z]$/.test(x.v) : x.t === 'op' && x.v === ',';
      if (!ok) return false;
    }
    return true;
  }

  private parseExpr(): Node {
    let terms: Node[] = [];
    if (this.isOp('pm')) {
      this.i++;
      return { k: 'pm', left: null, right: this.parseTerm() };
    }
    terms.push(this.parseTerm());
    for (;;) {
      if (this.isOp('+')) {
        this.i++;
        terms.push(this.parseTerm());
      } else if (this.isOp('-')) {
        this.i++;
        terms.push({ k: 'neg', arg: this.parseTerm() });
      } else if (this.isOp('pm')) {
        this.i++;
        const left: Node = terms.length === 1 ? terms[0]! : { k: 'add', terms };
        terms = [{ k: 'pm', left, right: this.parseTerm() }];
      } else break;
    }
    return terms.length === 1 ? terms[0]! : { k: 'add', terms };
  }

  private parseTerm(): Node {
    let node = this.parseUnary();
    for (;;) {
      if (this.isOp('*')) {
        this.i++;
        node = mul(node, this.parseUnary());
      } else if (this.isOp('/')) {
        this.i++;
        node = { k: 'div', num: node, den: this.parseUnary() };
      } else if (this.startsPrimary()) {
        const next = this.parseUnary();
        // mixed numbers: 2\frac{1}{2} means 2 + 1/2 (as latex2sympy reads it)
        if (
          node.k === 'num' &&
          !node.isFloat &&
          next.k === 'div' &&
          next.num.k === 'num' &&
          next.den.k === 'num' &&
          this.lastWasFrac
        ) {
          node = { k: 'add', terms: [node, next] };
        } else node = mul(node, next);
      } else break;
    }
    return node;
  }

  private lastWasFrac = false;

  private startsPrimary(): boolean {
    const t = this.peek();
    if (t === undefined) return false;
    if (t.t === 'op')
      return t.v === '(' || t.v === '{' || (t.v === '|' && this.absDepth === 0) || t.v === '\\{';
    return true;
  }

  private parseUnary(): Node {
    if (this.isOp('-')) {
      this.i++;
      const arg = this.parseUnary();
      return arg.k === 'num'
        ? { ...arg, value: { n: -arg.value.n, d: arg.value.d }, text: `-${arg.text}` }
        : { k: 'neg', arg };
    }
    if (this.isOp('+')) {
      this.i++;
      return this.parseUnary();
    }
    return this.parsePower();
  }

  private parsePower(): Node {
    const base = this.parsePostfix();
    if (this.isOp('^')) {
      this.i++;
      let exp: Node;
      if (this.isOp('-')) {
        this.i++;
        exp = { k: 'neg', arg: this.parseExponentAtom() };
      } else exp = this.parseExponentAtom();
      return this.parsePostfixOps({ k: 'pow', base, exp });
    }
    return base;
  }

  private parseExponentAtom(): Node {
    const t = this.peek();
    if (t?.t === 'op' && t.v === '{') return this.parseBraceGroup();
    const atom = this.parsePrimary();
    if (this.isOp('^')) {
      this.i++;
      return { k: 'pow', base: atom, exp: this.parseExponentAtom() };
    }
    return atom;
  }

  private parsePostfix(): Node {
    return this.parsePostfixOps(this.parsePrimary());
  }

  private parsePostfixOps(node: Node): Node {
    let n = node;
    for (;;) {
      if (this.isOp('!') && !this.isOp('=', this.i + 1)) {
        this.i++;
        n = { k: 'fn', name: 'factorial', args: [n] };
      } else if (this.isOp('%')) {
        this.i++;
        n = { k: 'pct', arg: n };
      } else if (this.isOp("'")) {
        this.i++;
      } else return n;
    }
  }

  private parseBraceGroup(): Node {
    this.expectOp('{');
    const items = this.parseSeq(new Set(['}']));
    this.expectOp('}');
    return items.length === 1 ? items[0]! : { k: 'set', items };
  }

  /** A LaTeX macro argument: {group} or a single token (\frac12 -> 1 and 2). */
  private parseArg(): Node {
    const t = this.peek();
    if (t === undefined) throw new ParseError('missing argument');
    if (t.t === 'op' && t.v === '{') return this.parseBraceGroup();
    if (t.t === 'num' && /^\d{2,}$/.test(t.v)) {
      this.toks.splice(this.i, 1, { t: 'num', v: t.v[0]! }, { t: 'num', v: t.v.slice(1) });
    }
    return this.parsePrimary();
  }

  private parsePrimary(): Node {
    const t = this.peek();
    if (t === undefined) throw new ParseError('unexpected end');
    this.lastWasFrac = false;
    this.i++;
    switch (t.t) {
      case 'num': {
        const value = ratFromDecimal(t.v);
        if (value === null) throw new ParseError(`number out of range: ${t.v}`);
        return { k: 'num', value, text: t.v, isFloat: /[.eE]/.test(t.v) };
      }
      case 'id':
        return this.identifier(t.v);
      case 'text':
        return { k: 'text', value: t.v };
      case 'matrix':
        return {
          k: 'matrix',
          rows: t.rows.map((r) => r.map((cell) => parseAnswer(cell))),
        };
      case 'cmd':
        return this.command(t.v);
      case 'op':
        return this.openOp(t.v);
    }
  }

  private identifier(v: string): Node {
    switch (v) {
      case 'pi':
        return { k: 'const', name: 'pi' };
      case 'inf':
      case 'infty':
      case 'infinity':
      case 'oo':
        return { k: 'const', name: 'inf' };
      case 'sqrt':
        return { k: 'fn', name: 'sqrt', args: [this.parseFnArg()] };
      default:
        if (FUNCS.has(v) && v.length > 1) return this.applyFunction(v);
        if (v === 'e' && !this.isOp('_')) return { k: 'const', name: 'e' };
        if (v === 'i' && !this.isOp('_')) return { k: 'const', name: 'i' };
        return this.subscripted(v);
    }
  }

  private subscripted(name: string): Node {
    if (this.isOp('_')) {
      this.i++;
      const t = this.peek();
      let sub: string;
      if (t?.t === 'op' && t.v === '{') {
        const start = this.i;
        this.parseBraceGroup();
        sub = this.toks
          .slice(start + 1, this.i - 1)
          .map((x) => ('v' in x ? x.v : ''))
          .join('');
      } else {
        this.i++;
        sub = t && 'v' in t ? t.v : '';
      }
      return { k: 'sym', name: `${name}_${sub}` };
    }
    return { k: 'sym', name };
  }

  private parseFnArg(): Node {
    if (this.isOp('(')) {
      this.i++;
      const items = this.parseSeq(new Set([')']));
      this.expectOp(')');
      if (items.length !== 1) throw new ParseError('function argument list');
      return items[0]!;
    }
    if (this.isOp('{')) return this.parseBraceGroup();
    return this.parsePower();
  }

  private applyFunction(name: string): Node {
    let power: Node | null = null;
    let base: Node | null = null;
    if (this.isOp('^')) {
      this.i++;
      power = this.parseExponentAtom();
    }
    if (this.isOp('_')) {
      this.i++;
      base = this.parseArg();
    }
    if (name === 'gcd' || name === 'lcm' || name === 'max' || name === 'min') {
      this.expectOp('(');
      const args = this.parseSeq(new Set([')']));
      this.expectOp(')');
      const f: Node = { k: 'fn', name, args };
      return power ? { k: 'pow', base: f, exp: power } : f;
    }
    // \sin x y is sin(x)*y: the argument is one power-level factor, or a parenthesised group
    let arg: Node;
    if (this.isOp('(')) {
      arg = this.parseFnArg();
    } else {
      arg = this.parsePower();
      if (arg.k === 'num' || arg.k === 'sym') {
        // \sin 2x -> sin(2x): absorb directly following implicit symbol factors
        while (this.peek()?.t === 'id' && !FUNCS.has((this.peek() as { v: string }).v))
          arg = mul(arg, this.parsePower());
      }
    }
    const f: Node = {
      k: 'fn',
      name: name === 'log' && base ? 'logb' : name,
      args: base ? [arg, base] : [arg],
    };
    return power ? { k: 'pow', base: f, exp: power } : f;
  }

  private command(name: string): Node {
    switch (name) {
      case 'frac': {
        const num = this.parseArg();
        const den = this.parseArg();
        const node: Node = { k: 'div', num, den };
        this.lastWasFrac = true;
        return node;
      }
      case 'binom': {
        const n = this.parseArg();
        const k = this.parseArg();
        return { k: 'fn', name: 'binom', args: [n, k] };
      }
      case 'sqrt': {
        if (this.isOp('[')) {
          this.i++;
          const items = this.parseSeq(new Set([']']));
          this.expectOp(']');
          const arg = this.parseArg();
          return { k: 'fn', name: 'root', args: [arg, items[0]!] };
        }
        return { k: 'fn', name: 'sqrt', args: [this.parseArg()] };
      }
      case 'boxed':
      case 'fbox':
        return this.parseArg();
      case 'e':
        return { k: 'const', name: 'e' };
      case 'emptyset':
      case 'varnothing':
        return { k: 'set', items: [] };
      default:
        if (FUNCS.has(name)) return this.applyFunction(name);
        return this.subscripted(name);
    }
  }

  private openOp(v: string): Node {
    switch (v) {
      case '(':
      case '[': {
        const items = this.parseSeq(new Set([')', ']']));
        const close = this.peekText();
        this.i++;
        if (items.length === 1 && ((v === '(' && close === ')') || (v === '[' && close === ']'))) {
          return items[0]!;
        }
        return { k: 'group', items, open: v, close };
      }
      case '{':
        this.i--;
        return this.parseBraceGroup();
      case '\\{': {
        const items = this.isOp('\\}') ? [] : this.parseSeq(new Set(['\\}']));
        this.expectOp('\\}');
        return { k: 'set', items };
      }
      case '|': {
        this.absDepth++;
        const inner = this.parseExpr();
        this.absDepth--;
        this.expectOp('|');
        return { k: 'fn', name: 'abs', args: [inner] };
      }
      default:
        throw new ParseError(`unexpected '${v}'`);
    }
  }
}

function mul(a: Node, b: Node): Node {
  if (a.k === 'mul') return { k: 'mul', factors: [...a.factors, b] };
  return { k: 'mul', factors: [a, b] };
}

export const ONE = rat(1n)!;

const KNOWN_WORDS = new Set([...WORDS, ...FUNCS, ...GREEK, 'and', 'or', 'frac', 'sqrt', 'text']);

/** True for English sentences ("The answer is 12"): two or more plain words that are not math. */
export function looksLikeProse(s: string): boolean {
  const bare = s.replace(/\\[a-zA-Z]+(?:\s*\{[^{}]*\})?/g, ' ');
  let words = 0;
  for (const m of bare.matchAll(/[a-zA-Z]{3,}/g))
    if (!KNOWN_WORDS.has(m[0].toLowerCase()) && ++words >= 2) return true;
  return false;
}
