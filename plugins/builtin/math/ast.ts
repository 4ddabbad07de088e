// The answer's mathematical value, independent of any CAS: what the parser produces and the
// comparator walks. Only the "symbolic tier" of the comparator hands nodes to a CAS.

export interface Rational {
  n: bigint;
  d: bigint; // always > 0, gcd(n, d) = 1
}

export type Node =
  | { k: 'num'; value: Rational; text: string; isFloat: boolean }
  | { k: 'sym'; name: string }
  | { k: 'const'; name: 'pi' | 'e' | 'i' | 'inf' }
  | { k: 'add'; terms: Node[] }
  | { k: 'mul'; factors: Node[] }
  | { k: 'neg'; arg: Node }
  | { k: 'div'; num: Node; den: Node }
  | { k: 'pow'; base: Node; exp: Node }
  | { k: 'pct'; arg: Node }
  | { k: 'fn'; name: string; args: Node[] }
  | { k: 'pm'; left: Node | null; right: Node }
  | { k: 'group'; items: Node[]; open: string; close: string }
  | { k: 'set'; items: Node[] }
  | { k: 'list'; items: Node[] }
  | { k: 'union'; parts: Node[] }
  | { k: 'rel'; ops: RelOp[]; sides: Node[] }
  | { k: 'matrix'; rows: Node[][] }
  | { k: 'text'; value: string };

export type RelOp = '=' | '<' | '<=' | '>' | '>=' | '!=';

// ---- exact rationals (bounded: callers get null instead of a huge number) -------------------

const MAX_BITS = 4096;

function gcd(a: bigint, b: bigint): bigint {
  let x = a < 0n ? -a : a;
  let y = b < 0n ? -b : b;
  while (y !== 0n) {
    const t = x % y;
    x = y;
    y = t;
  }
  return x;
}

function bits(x: bigint): number {
  return (x < 0n ? -x : x).toString(16).length * 4;
}

export function rat(n: bigint, d = 1n): Rational | null {
  if (d === 0n) return null;
  if (d < 0n) {
    n = -n;
    d = -d;
  }
  const g = gcd(n, d);
  const r = g > 1n ? { n: n / g, d: d / g } : { n, d };
  if (bits(r.n) > MAX_BITS || bits(r.d) > MAX_BITS) return null;
  return r;
}

export const ratAdd = (a: Rational, b: Rational) => rat(a.n * b.d + b.n * a.d, a.d * b.d);
export const ratMul = (a: Rational, b: Rational) => rat(a.n * b.n, a.d * b.d);
export const ratDiv = (a: Rational, b: Rational) => (b.n === 0n ? null : rat(a.n * b.d, a.d * b.n));
export const ratEq = (a: Rational, b: Rational) => a.n === b.n && a.d === b.d;

export function ratPow(a: Rational, e: Rational): Rational | null {
  if (e.d !== 1n) return null;
  const k = e.n < 0n ? -e.n : e.n;
  // Bound the work before doing it: 9^{9^{9^9}} must not allocate a gigantic bigint.
  if (k > 4096n || (bits(a.n) + bits(a.d)) * Number(k) > MAX_BITS * 2) return null;
  const p = rat(a.n ** k, a.d ** k);
  if (p === null) return null;
  return e.n < 0n ? ratDiv({ n: 1n, d: 1n }, p) : p;
}

export function ratToNumber(r: Rational): number {
  const n = Number(r.n);
  const d = Number(r.d);
  if (Number.isFinite(n) && Number.isFinite(d)) return n / d;
  // Scale both down for huge values so the quotient stays finite when it can.
  const s = BigInt(Math.max(0, Math.max(bits(r.n), bits(r.d)) - 1000));
  return Number(r.n >> s) / Number(r.d >> s);
}

/** Parses a decimal literal ("1234", "0.125", "1.5e-3") exactly. */
export function ratFromDecimal(text: string): Rational | null {
  const m = /^(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m) return null;
  const int = m[1] ?? '';
  const frac = m[2] ?? '';
  const exp = m[3] ? Number(m[3]) : 0;
  if (Math.abs(exp) > 400 || int.length + frac.length > 400) return null;
  const digits = BigInt(`${int}${frac}` || '0');
  const scale = exp - frac.length;
  return scale >= 0 ? rat(digits * 10n ** BigInt(scale)) : rat(digits, 10n ** BigInt(-scale));
}

export function ratToString(r: Rational): string {
  return r.d === 1n ? r.n.toString() : `${r.n}/${r.d}`;
}

// ---- printing: a canonical string used in `details` and for string-level equality ------------

export function show(node: Node): string {
  switch (node.k) {
    case 'num':
      return node.isFloat ? node.text : ratToString(node.value);
    case 'sym':
      return node.name;
    case 'const':
      return node.name;
    case 'add':
      return node.terms
        .map((t, i) => (i === 0 ? show(t) : t.k === 'neg' ? ` - ${show(t.arg)}` : ` + ${show(t)}`))
        .join('');
    case 'mul':
      return node.factors.map((f) => wrap(f, f.k === 'add' || f.k === 'neg')).join('*');
    case 'neg':
      return `-${wrap(node.arg, node.arg.k === 'add')}`;
    case 'div':
      return `${wrap(node.num, isCompound(node.num))}/${wrap(node.den, isCompound(node.den))}`;
    case 'pow':
      return `${wrap(node.base, isCompound(node.base))}^${wrap(node.exp, isCompound(node.exp))}`;
    case 'pct':
      return `${wrap(node.arg, isCompound(node.arg))}%`;
    case 'fn':
      return `${node.name.replace(/^call:/, '')}(${node.args.map(show).join(', ')})`;
    case 'pm':
      return node.left ? `${show(node.left)} ± ${show(node.right)}` : `±${show(node.right)}`;
    case 'group':
      return `${node.open}${node.items.map(show).join(', ')}${node.close}`;
    case 'set':
      return `{${node.items.map(show).join(', ')}}`;
    case 'list':
      return node.items.map(show).join(', ');
    case 'union':
      return node.parts.map(show).join(' ∪ ');
    case 'rel':
      return node.sides.map((s, i) => (i === 0 ? show(s) : ` ${node.ops[i - 1]} ${show(s)}`)).join('');
    case 'matrix':
      return `[${node.rows.map((r) => `[${r.map(show).join(', ')}]`).join(', ')}]`;
    case 'text':
      return `"${node.value}"`;
  }
}

function isCompound(n: Node): boolean {
  return n.k === 'add' || n.k === 'mul' || n.k === 'neg' || n.k === 'div' || n.k === 'pow';
}

function wrap(n: Node, paren: boolean): string {
  return paren ? `(${show(n)})` : show(n);
}

export function countNodes(node: Node, limit: number): number {
  let count = 0;
  const stack: Node[] = [node];
  while (stack.length > 0 && count <= limit) {
    const n = stack.pop()!;
    count++;
    for (const c of children(n)) stack.push(c);
  }
  return count;
}

export function children(n: Node): Node[] {
  switch (n.k) {
    case 'add':
      return n.terms;
    case 'mul':
      return n.factors;
    case 'neg':
    case 'pct':
      return [n.arg];
    case 'div':
      return [n.num, n.den];
    case 'pow':
      return [n.base, n.exp];
    case 'fn':
      return n.args;
    case 'pm':
      return n.left ? [n.left, n.right] : [n.right];
    case 'group':
    case 'set':
    case 'list':
      return n.items;
    case 'union':
      return n.parts;
    case 'rel':
      return n.sides;
    case 'matrix':
      return n.rows.flat();
    default:
      return [];
  }
}

export function freeSymbols(node: Node, out = new Set<string>()): Set<string> {
  if (node.k === 'sym') out.add(node.name);
  for (const c of children(node)) freeSymbols(c, out);
  return out;
}
