// Equivalence of a reference (gold) and a predicted answer, following Math-Verify's documented
// semantics: string first, then equations/assignments, relations, sets/intervals/tuples,
// symbols and text, numbers (exact, or rounded when a float is involved), and finally the CAS.
// Deliberately asymmetric where Math-Verify is (gold decides how equations are read).

import { children, countNodes, freeSymbols, type Node, type RelOp, rat, ratEq, show } from './ast';
import type { Cas } from './cas';
import { evalFloat, exactValue, roundedKey } from './evaluate';

export interface CompareOptions {
  floatRounding: number;
  cas: Cas;
  strictVariables: boolean;
  allowSetRelationComparison: boolean;
  deadline: number;
  maxCasNodes: number;
}

export class DeadlineExceeded extends Error {}

export interface Verdict {
  equal: boolean;
  rule: string;
}

const NO = (rule: string): Verdict => ({ equal: false, rule });
const YES = (rule: string): Verdict => ({ equal: true, rule });

const INVERSE: Record<RelOp, RelOp> = { '=': '=', '!=': '!=', '<': '>', '>': '<', '<=': '>=', '>=': '<=' };

export function compareNodes(goldIn: Node, predIn: Node, o: CompareOptions): Verdict {
  if (performance.now() > o.deadline) throw new DeadlineExceeded();
  let gold = assignmentGroups(expandPm(goldIn));
  let pred = assignmentGroups(expandPm(predIn));
  if (!o.strictVariables) pred = renameVariables(gold, pred);

  if (show(gold) === show(pred)) return YES('string');

  // Equations: follow the gold's format (x = 5 vs 5, 5 vs x = 5, chains a = b = 5).
  const gAssign = isAssignment(gold);
  const pAssign = isAssignment(pred);
  if (gAssign && gold.k === 'rel')
    gold = { k: 'rel', ops: ['='], sides: [gold.sides[0]!, gold.sides.at(-1)!] };
  if (pAssign && pred.k === 'rel')
    pred = { k: 'rel', ops: ['='], sides: [pred.sides[0]!, pred.sides.at(-1)!] };
  if (isEquation(pred) && !isEquation(gold) && pred.k === 'rel') pred = pred.sides.at(-1)!;
  else if (gAssign && !isEquation(pred) && gold.k === 'rel') gold = gold.sides.at(-1)!;
  // g(t) = 3 vs g(s) = 3: the same function named on both sides; its argument is a dummy
  if (gold.k === 'rel' && pred.k === 'rel' && gAssign && pAssign && sameCall(gold.sides[0]!, pred.sides[0]!))
    pred = { ...pred, sides: [gold.sides[0]!, ...pred.sides.slice(1)] };
  if (show(gold) === show(pred)) return YES('string_after_unwrap');

  // Inequalities vs the solution set: only when the gold is the relation (anti reward hacking).
  if (isRelationLike(gold) && isSetLike(pred)) {
    const asSet = relationToSet(gold);
    if (asSet) gold = asSet;
  } else if (o.allowSetRelationComparison && isRelationLike(pred) && isSetLike(gold)) {
    const asSet = relationToSet(pred);
    if (asSet) pred = asSet;
  }

  if (gold.k === 'rel' && pred.k === 'rel') return compareRelations(gold, pred, o);
  if (gold.k === 'rel' || pred.k === 'rel') return NO('relation_vs_value');

  if (hasMatrix(gold) || hasMatrix(pred)) return compareMatrices(evalMatrix(gold), evalMatrix(pred), o);
  if (isSetLike(gold) || isSetLike(pred)) return compareCollections(gold, pred, o);

  const gText = letters(gold);
  const pText = letters(pred);
  if (gold.k === 'text' || pred.k === 'text' || gold.k === 'sym' || pred.k === 'sym') {
    if (gText !== null && pText !== null) {
      const a = gText.length > 1 ? gText.toLowerCase() : gText;
      const b = pText.length > 1 ? pText.toLowerCase() : pText;
      if (a === b) return YES('symbol_or_text');
      if (gold.k === 'text' || pred.k === 'text') return NO('text_differs');
    }
    if (gold.k === 'text' || pred.k === 'text') return NO('text_vs_expression');
  }

  const scalar = compareScalars(gold, pred, o);
  // A percent sign on one side only: 15% answers 15 and 0.15 (the question asked "what percent")
  if (!scalar.equal && (gold.k === 'pct') !== (pred.k === 'pct')) {
    const bare = compareScalars(gold.k === 'pct' ? gold.arg : gold, pred.k === 'pct' ? pred.arg : pred, o);
    if (bare.equal) return YES(`${bare.rule}_percent_sign`);
  }
  return scalar;
}

function compareScalars(gold: Node, pred: Node, o: CompareOptions): Verdict {
  const gx = exactValue(gold);
  const px = exactValue(pred);
  const floatInvolved = isFloatAtom(gold) || isFloatAtom(pred);
  if (gx && px && !floatInvolved) return ratEq(gx, px) ? YES('exact_number') : NO('numbers_differ');

  const gConst = freeSymbols(gold).size === 0;
  const pConst = freeSymbols(pred).size === 0;
  if (floatInvolved && gConst && pConst) {
    const a = evalFloat(gold, new Map());
    const b = evalFloat(pred, new Map());
    if (Number.isFinite(a) && Number.isFinite(b)) {
      return roundedKey(a, o.floatRounding) === roundedKey(b, o.floatRounding)
        ? YES(`float_rounded_${o.floatRounding}`)
        : NO('numbers_differ');
    }
  }
  if (gx && px) return ratEq(gx, px) ? YES('exact_number') : NO('numbers_differ');
  return symbolic(gold, pred, o);
}

function symbolic(gold: Node, pred: Node, o: CompareOptions): Verdict {
  const budget = o.maxCasNodes;
  if (countNodes(gold, budget) > budget || countNodes(pred, budget) > budget) return NO('too_large_for_cas');
  if (hasHugePower(gold) || hasHugePower(pred)) return NO('exponent_too_large_for_cas');
  const vars = [...new Set([...freeSymbols(gold), ...freeSymbols(pred)])].sort();
  try {
    const r = o.cas.equivalent(gold, pred, vars);
    if (r === true) return YES(`symbolic:${o.cas.name}`);
    return NO(r === false ? `symbolic_differs:${o.cas.name}` : `symbolic_undecided:${o.cas.name}`);
  } catch (e) {
    return NO(`cas_error:${e instanceof Error ? e.message.slice(0, 80) : 'unknown'}`);
  }
}

/** A power whose exponent is large (and the base not 0/±1) would make an exact CAS explode. */
function hasHugePower(n: Node): boolean {
  if (n.k === 'pow') {
    const e = evalFloat(n.exp, new Map());
    const b = evalFloat(n.base, new Map());
    if (!Number.isNaN(e) && Math.abs(e) > 256 && !(Math.abs(b) <= 1)) return true;
  }
  switch (n.k) {
    case 'add':
      return n.terms.some(hasHugePower);
    case 'mul':
      return n.factors.some(hasHugePower);
    case 'neg':
    case 'pct':
      return hasHugePower(n.arg);
    case 'div':
      return hasHugePower(n.num) || hasHugePower(n.den);
    case 'pow':
      return hasHugePower(n.base) || hasHugePower(n.exp);
    case 'fn':
      if (n.name === 'factorial') {
        const v = evalFloat(n.args[0]!, new Map());
        if (v > 1000) return true; // NaN (a symbolic argument) is fine
      }
      return n.args.some(hasHugePower);
    default:
      return false;
  }
}

function isFloatAtom(n: Node): boolean {
  if (n.k === 'num') return n.isFloat;
  if (n.k === 'neg' || n.k === 'pct') return isFloatAtom(n.arg);
  return false;
}

// ---- equations and relations ---------------------------------------------------------------

/** Leaves are all symbols (x, (p, q), |AB|, NO/BO, f(x)): the left side of an assignment. */
function isOnlySymbols(n: Node): boolean {
  if (n.k === 'sym') return true;
  if (n.k === 'num' || n.k === 'const' || n.k === 'text' || n.k === 'rel') return false;
  const kids = children(n);
  return kids.length > 0 && kids.every(isOnlySymbols);
}

function isAssignment(n: Node): boolean {
  return n.k === 'rel' && n.ops.every((op) => op === '=') && isOnlySymbols(n.sides[0]!);
}

function isEquation(n: Node): boolean {
  return n.k === 'rel' && n.ops.every((op) => op === '=');
}

function isRelationLike(n: Node): boolean {
  if (n.k === 'rel') return true;
  return n.k === 'list' && n.items.every((i) => i.k === 'rel' && !isEquation(i));
}

function isSetLike(n: Node): boolean {
  return n.k === 'set' || n.k === 'list' || n.k === 'group' || n.k === 'union';
}

function interval(lo: Node, hi: Node, loOpen: boolean, hiOpen: boolean): Node {
  return { k: 'group', items: [lo, hi], open: loOpen ? '(' : '[', close: hiOpen ? ')' : ']' };
}

const NEG_INF: Node = { k: 'neg', arg: { k: 'const', name: 'inf' } };
const POS_INF: Node = { k: 'const', name: 'inf' };

/** x > 2 -> (2, inf); 1 <= x < 3 -> [1, 3); x < -1 or x > 2 -> union. Single variable only. */
export function relationToSet(n: Node): Node | null {
  if (n.k === 'list') {
    const parts = n.items.map(relationToSet);
    if (parts.some((p) => p === null)) return null;
    return { k: 'union', parts: parts as Node[] };
  }
  if (n.k !== 'rel') return null;
  if (n.ops.length === 1) {
    let [l, r] = n.sides as [Node, Node];
    let op = n.ops[0]!;
    if (isConst(l) && !isConst(r)) {
      [l, r] = [r, l];
      op = INVERSE[op];
    }
    if (!isConst(r)) return null;
    if (isAbsOfVar(l)) return absToSet(op, r);
    if (!isVar(l)) {
      const lin = linearForm(l);
      if (lin === null) return null;
      // c*x + d op r  ->  x op' (r - d) / c, the relation flipped when c < 0
      return relationToSet({
        k: 'rel',
        ops: [lin.sign > 0 ? op : INVERSE[op]],
        sides: [lin.x, solveFor(lin, r)],
      });
    }
    switch (op) {
      case '<':
        return interval(NEG_INF, r, true, true);
      case '<=':
        return interval(NEG_INF, r, true, false);
      case '>':
        return interval(r, POS_INF, true, true);
      case '>=':
        return interval(r, POS_INF, false, true);
      case '=':
        return { k: 'set', items: [r] };
      case '!=':
        return { k: 'union', parts: [interval(NEG_INF, r, true, true), interval(r, POS_INF, true, true)] };
    }
  }
  if (n.ops.length === 2 && isConst(n.sides[0]!) && isConst(n.sides[2]!)) {
    let [a, mid, b] = n.sides as [Node, Node, Node];
    let [o1, o2] = n.ops as [RelOp, RelOp];
    const up = (op: RelOp) => op === '<' || op === '<=';
    const down = (op: RelOp) => op === '>' || op === '>=';
    if (down(o1) && down(o2)) {
      [a, b] = [b, a];
      [o1, o2] = [INVERSE[o2], INVERSE[o1]];
    }
    if (!(up(o1) && up(o2))) return null;
    if (isAbsOfVar(mid)) return absChainToSet(a, o1, o2, b);
    if (!isVar(mid)) {
      const lin = linearForm(mid);
      if (lin === null) return null;
      const [lo, hi] = [solveFor(lin, a), solveFor(lin, b)];
      return lin.sign > 0
        ? relationToSet({ k: 'rel', ops: [o1, o2], sides: [lo, lin.x, hi] })
        : relationToSet({ k: 'rel', ops: [o2, o1], sides: [hi, lin.x, lo] });
    }
    return interval(a, b, o1 === '<', o2 === '<');
  }
  return null;
}

// the variable side: x, or f(x) (Math-Verify unwraps function calls into symbols)
const isVar = (s: Node): boolean => isOnlySymbols(s) && !isAbsOfVar(s);
const isConst = (s: Node): boolean => freeSymbols(s).size === 0;
const isAbsOfVar = (s: Node): boolean =>
  s.k === 'fn' && s.name === 'abs' && s.args.length === 1 && isVar(s.args[0]!);
const neg = (x: Node): Node => ({ k: 'neg', arg: x });

/** |x| op c as a set of x; null where it is empty or all reals (left undecided). */
function absToSet(op: RelOp, c: Node): Node | null {
  const v = evalFloat(c, new Map());
  if (!Number.isFinite(v)) return null;
  switch (op) {
    case '<':
      return v > 0 ? interval(neg(c), c, true, true) : null;
    case '<=':
      return v >= 0 ? interval(neg(c), c, false, false) : null;
    case '>':
      return v >= 0
        ? { k: 'union', parts: [interval(NEG_INF, neg(c), true, true), interval(c, POS_INF, true, true)] }
        : null;
    case '>=':
      return v > 0
        ? { k: 'union', parts: [interval(NEG_INF, neg(c), true, false), interval(c, POS_INF, false, true)] }
        : null;
    default:
      return null;
  }
}

/** a o1 |x| o2 b (o1, o2 among < and <=): two mirrored intervals, or one when a is not positive. */
function absChainToSet(a: Node, o1: RelOp, o2: RelOp, b: Node): Node | null {
  const av = evalFloat(a, new Map());
  if (Number.isNaN(av)) return null;
  if (av > 0)
    return {
      k: 'union',
      parts: [interval(neg(b), neg(a), o2 === '<', o1 === '<'), interval(a, b, o1 === '<', o2 === '<')],
    };
  if (av < 0 || o1 === '<=') return absToSet(o2, b);
  return null;
}

interface LinearForm {
  x: Node;
  c: Node;
  d: Node;
  sign: number;
}

const LINEARITY_POINTS = [2, -1.7, 3.3];

/** side = c*x + d in its one variable x (checked at sample points); null otherwise. */
function linearForm(side: Node): LinearForm | null {
  const vars = [...freeSymbols(side)];
  if (vars.length !== 1) return null;
  const name = vars[0]!;
  const at = (v: number): Node => mapSymbols(side, (sym) => (sym === name ? number(v) : null));
  const d = at(0);
  const c: Node = { k: 'add', terms: [at(1), neg(d)] };
  const dv = evalFloat(d, new Map());
  const cv = evalFloat(c, new Map());
  if (!Number.isFinite(dv) || !Number.isFinite(cv) || Math.abs(cv) < 1e-12) return null;
  for (const t of LINEARITY_POINTS) {
    const v = evalFloat(side, new Map([[name, t]]));
    if (!(Math.abs(v - (cv * t + dv)) <= 1e-9 * Math.max(1, Math.abs(v)))) return null;
  }
  return { x: { k: 'sym', name }, c, d, sign: Math.sign(cv) };
}

/** The x with c*x + d = bound. */
function solveFor(lin: LinearForm, bound: Node): Node {
  return { k: 'div', num: { k: 'add', terms: [bound, neg(lin.d)] }, den: lin.c };
}

function number(v: number): Node {
  const r = rat(BigInt(v));
  return { k: 'num', value: r!, text: String(v), isFloat: false };
}

function difference(n: Extract<Node, { k: 'rel' }>, i = 0): Node {
  return { k: 'add', terms: [n.sides[i]!, { k: 'neg', arg: n.sides[i + 1]! }] };
}

function compareRelations(
  gold: Extract<Node, { k: 'rel' }>,
  pred: Extract<Node, { k: 'rel' }>,
  o: CompareOptions,
): Verdict {
  if (gold.ops.length !== pred.ops.length) return NO('relation_shape_differs');
  if (gold.ops.length > 1) {
    const same = gold.ops.every((op, i) => op === pred.ops[i]);
    if (same && gold.sides.every((s, i) => compareNodes(s, pred.sides[i]!, o).equal))
      return YES('relation_chain');
    const flipped = gold.ops.every((op, i) => INVERSE[op] === pred.ops[pred.ops.length - 1 - i]);
    const rev = [...pred.sides].reverse();
    if (flipped && gold.sides.every((s, i) => compareNodes(s, rev[i]!, o).equal))
      return YES('relation_chain_flipped');
    return NO('relation_chain_differs');
  }
  const gop = gold.ops[0]!;
  const pop = pred.ops[0]!;
  const dg = difference(gold);
  const dp = difference(pred);
  if (gop === pop && compareNodes(dg, dp, o).equal) return YES('relation_same');
  if (INVERSE[gop] === pop && compareNodes(dg, { k: 'neg', arg: dp }, o).equal)
    return YES('relation_flipped');
  // Same solution set when one side is a constant multiple of the other (2y = 4x + 2 vs y = 2x + 1).
  const ratio = constantRatio(dg, dp);
  if (ratio !== null && ratio !== 0) {
    if ((gop === '=' || gop === '!=') && gop === pop) return YES('relation_scaled');
    if (ratio > 0 && gop === pop) return YES('relation_scaled');
    if (ratio < 0 && INVERSE[gop] === pop) return YES('relation_scaled_flipped');
  }
  return NO('relations_differ');
}

const RATIO_POINTS = [0.7391, 1.3247, 2.2361, -0.5773, 1.6183];

function constantRatio(a: Node, b: Node): number | null {
  const vars = [...new Set([...freeSymbols(a), ...freeSymbols(b)])];
  if (vars.length === 0) return null;
  let ratio: number | null = null;
  for (let p = 0; p < RATIO_POINTS.length; p++) {
    const env = new Map(vars.map((v, j) => [v, RATIO_POINTS[(p + j) % RATIO_POINTS.length]! * (1 + j)]));
    const va = evalFloat(a, env);
    const vb = evalFloat(b, env);
    if (!Number.isFinite(va) || !Number.isFinite(vb) || vb === 0) return null;
    const r = va / vb;
    if (ratio === null) ratio = r;
    else if (Math.abs(r - ratio) > 1e-9 * Math.max(1, Math.abs(ratio))) return null;
  }
  return ratio;
}

// ---- sets, tuples, intervals ----------------------------------------------------------------

type Coll =
  | { kind: 'set' | 'tuple'; items: Node[] }
  | { kind: 'interval'; lo: Node; hi: Node; loOpen: boolean; hiOpen: boolean; pair: boolean }
  | { kind: 'union'; parts: Coll[] };

function toColl(n: Node): Coll {
  switch (n.k) {
    case 'set':
    case 'list': {
      // a set has no duplicates: {1, 1, 2} = {1, 2}
      const seen = new Set<string>();
      return {
        kind: 'set',
        items: n.items.filter((x) => !seen.has(show(x)) && seen.add(show(x)) !== undefined),
      };
    }
    case 'group': {
      if (
        n.items.length === 2 &&
        (n.open === '(' || n.open === '[') &&
        (n.close === ')' || n.close === ']')
      ) {
        return {
          kind: 'interval',
          lo: n.items[0]!,
          hi: n.items[1]!,
          loOpen: n.open === '(',
          hiOpen: n.close === ')',
          pair: n.open === '(' && n.close === ')',
        };
      }
      return { kind: 'tuple', items: n.items };
    }
    case 'union':
      return { kind: 'union', parts: n.parts.map(toColl) };
    default:
      return { kind: 'set', items: [n] };
  }
}

function compareCollections(gold: Node, pred: Node, o: CompareOptions): Verdict {
  return compareColl(toColl(gold), toColl(pred), o) ? YES('collection') : NO('collections_differ');
}

/** {1, 3} ∪ {2} is the set {1, 2, 3}: a union of finite sets only, flattened. */
function flattenFiniteUnion(c: Coll): Coll {
  if (c.kind !== 'union' || !c.parts.every((x) => x.kind === 'set')) return c;
  const seen = new Set<string>();
  const items: Node[] = [];
  for (const part of c.parts as { items: Node[] }[])
    for (const x of part.items) if (!seen.has(show(x)) && seen.add(show(x))) items.push(x);
  return { kind: 'set', items };
}

function compareColl(gIn: Coll, pIn: Coll, o: CompareOptions): boolean {
  const g = flattenFiniteUnion(gIn);
  const p = flattenFiniteUnion(pIn);
  if (g.kind === 'union' || p.kind === 'union') {
    const gp = g.kind === 'union' ? g.parts : [g];
    const pp = p.kind === 'union' ? p.parts : [p];
    if (gp.length !== pp.length) return false;
    return matchUnordered(gp, pp, (a, b) => compareColl(a, b, o));
  }
  if (g.kind === 'interval' && p.kind === 'interval') {
    return (
      g.loOpen === p.loOpen &&
      g.hiOpen === p.hiOpen &&
      compareNodes(g.lo, p.lo, o).equal &&
      compareNodes(g.hi, p.hi, o).equal
    );
  }
  // (a, b) is both an open interval and an ordered pair: compare as a pair against tuples/lists
  if (g.kind === 'interval' || p.kind === 'interval') {
    const iv = (g.kind === 'interval' ? g : p) as Extract<Coll, { kind: 'interval' }>;
    const other = (g.kind === 'interval' ? p : g) as Extract<Coll, { kind: 'set' | 'tuple' }>;
    if (!iv.pair || other.items.length !== 2) return false;
    const pairItems = [iv.lo, iv.hi];
    const [gi, pi] = g.kind === 'interval' ? [pairItems, other.items] : [other.items, pairItems];
    return gi.every((x, i) => compareNodes(x, pi[i]!, o).equal);
  }
  if (g.items.length !== p.items.length) return false;
  const ordered = g.kind === 'tuple';
  if (ordered) return g.items.every((x, i) => compareNodes(x, p.items[i]!, o).equal);
  return matchUnordered(g.items, p.items, (a, b) => compareNodes(a, b, o).equal);
}

function matchUnordered<T>(gold: T[], pred: T[], eq: (a: T, b: T) => boolean): boolean {
  const used = new Array<boolean>(pred.length).fill(false);
  for (const g of gold) {
    let found = false;
    for (let j = 0; j < pred.length; j++) {
      if (!used[j] && eq(g, pred[j]!)) {
        used[j] = true;
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  return true;
}

type MatrixNode = Extract<Node, { k: 'matrix' }>;

function hasMatrix(n: Node): boolean {
  if (n.k === 'matrix') return true;
  if (n.k === 'add') return n.terms.some(hasMatrix);
  if (n.k === 'mul') return n.factors.some(hasMatrix);
  if (n.k === 'neg') return hasMatrix(n.arg);
  if (n.k === 'div') return hasMatrix(n.num);
  return false;
}

const entryAdd = (a: Node, b: Node): Node => ({ k: 'add', terms: [a, b] });
const entryMul = (a: Node, b: Node): Node => ({ k: 'mul', factors: [a, b] });
const scaleMatrix = (m: MatrixNode, s: Node): MatrixNode => ({
  k: 'matrix',
  rows: m.rows.map((r) => r.map((e) => entryMul(s, e))),
});

/**
 * Matrix arithmetic written out in an answer (sums, differences, scalar multiples, products) is
 * evaluated entry by entry into one matrix; entries stay nodes, so they compare exactly. Anything
 * else (shape mismatch, a matrix in a denominator) is returned unchanged and compares unequal.
 */
function evalMatrix(n: Node): Node {
  const fail = n;
  switch (n.k) {
    case 'neg': {
      const m = evalMatrix(n.arg);
      return m.k === 'matrix' ? scaleMatrix(m, number(-1)) : fail;
    }
    case 'div': {
      const m = evalMatrix(n.num);
      return m.k === 'matrix' && !hasMatrix(n.den)
        ? scaleMatrix(m, { k: 'div', num: number(1), den: n.den })
        : fail;
    }
    case 'add': {
      const terms = n.terms.map(evalMatrix);
      if (!terms.every((t): t is MatrixNode => t.k === 'matrix')) return fail;
      const [first, ...rest] = terms as [MatrixNode, ...MatrixNode[]];
      const shape = (m: MatrixNode) => m.rows.map((r) => r.length).join(',');
      if (rest.some((m) => shape(m) !== shape(first))) return fail;
      return {
        k: 'matrix',
        rows: first.rows.map((r, i) =>
          r.map((e, j) => rest.reduce((acc, m) => entryAdd(acc, m.rows[i]![j]!), e)),
        ),
      };
    }
    case 'mul': {
      let acc: Node | null = null;
      for (const f of n.factors.map(evalMatrix)) {
        if (acc === null) acc = f;
        else if (acc.k !== 'matrix' && f.k !== 'matrix') acc = entryMul(acc, f);
        else if (acc.k !== 'matrix') acc = scaleMatrix(f as MatrixNode, acc);
        else if (f.k !== 'matrix') acc = scaleMatrix(acc, f);
        else {
          const prod = matrixProduct(acc, f);
          if (prod === null) return fail;
          acc = prod;
        }
      }
      return acc ?? fail;
    }
    default:
      return n;
  }
}

/** Products build entry nodes of size ~n per factor: bounded so a chain of big ones stays cheap. */
const MAX_MATRIX_NODES = 5_000;

function matrixProduct(a: MatrixNode, b: MatrixNode): MatrixNode | null {
  const inner = b.rows.length;
  if (a.rows.some((r) => r.length !== inner) || inner === 0) return null;
  const cols = b.rows[0]!.length;
  if (b.rows.some((r) => r.length !== cols)) return null;
  if (
    countNodes(a, MAX_MATRIX_NODES) * cols + countNodes(b, MAX_MATRIX_NODES) * a.rows.length >
    MAX_MATRIX_NODES
  )
    return null;
  return {
    k: 'matrix',
    rows: a.rows.map((r) =>
      Array.from({ length: cols }, (_, j) =>
        r.map((e, k) => entryMul(e, b.rows[k]![j]!)).reduce((x, y) => entryAdd(x, y)),
      ),
    ),
  };
}

function compareMatrices(gold: Node, pred: Node, o: CompareOptions): Verdict {
  if (gold.k !== 'matrix' || pred.k !== 'matrix') return NO('matrix_vs_other');
  if (gold.rows.length !== pred.rows.length) return NO('matrix_shape_differs');
  for (let r = 0; r < gold.rows.length; r++) {
    const gr = gold.rows[r]!;
    const pr = pred.rows[r]!;
    if (gr.length !== pr.length) return NO('matrix_shape_differs');
    for (let c = 0; c < gr.length; c++)
      if (!compareNodes(gr[c]!, pr[c]!, o).equal) return NO('matrix_entry_differs');
  }
  return YES('matrix');
}

// ---- helpers ----------------------------------------------------------------------------------

/** a ± b is the set {a + b, a - b}. */
function expandPm(n: Node): Node {
  if (n.k === 'pm') {
    const left = n.left ?? { k: 'num', value: { n: 0n, d: 1n }, text: '0', isFloat: false };
    const plus: Node = n.left ? { k: 'add', terms: [left, n.right] } : n.right;
    const minus: Node = n.left
      ? { k: 'add', terms: [left, { k: 'neg', arg: n.right }] }
      : { k: 'neg', arg: n.right };
    return { k: 'set', items: [plus, minus] };
  }
  if (n.k === 'rel' && n.sides.some((s) => s.k === 'pm')) {
    return { ...n, sides: n.sides.map(expandPm) };
  }
  return n;
}

/**
 * p=5,q=2; p=7,q=2 is the set of tuples (5,2), (7,2): a list of assignments whose names repeat
 * in the same order is read as one tuple per group. Anything else is returned unchanged.
 */
function assignmentGroups(n: Node): Node {
  if (n.k !== 'list' || n.items.length < 4) return n;
  const names: string[] = [];
  for (const item of n.items) {
    const lhs = item.k === 'rel' && item.ops.length === 1 && item.ops[0] === '=' ? item.sides[0]! : null;
    if (lhs?.k !== 'sym') return n;
    names.push(lhs.name);
  }
  const period = names.indexOf(names[0]!, 1);
  if (period < 2 || names.length % period !== 0) return n;
  if (new Set(names.slice(0, period)).size !== period) return n;
  if (!names.every((name, i) => name === names[i % period])) return n;
  const groups: Node[] = [];
  for (let i = 0; i < names.length; i += period) {
    const items = n.items.slice(i, i + period).map((x) => (x as Extract<Node, { k: 'rel' }>).sides[1]!);
    groups.push({ k: 'group', items, open: '(', close: ')' });
  }
  return { k: 'list', items: groups };
}

/** Both sides are calls of the same one-letter function with as many arguments: g(t), g(s). */
function sameCall(a: Node, b: Node): boolean {
  return (
    a.k === 'fn' &&
    b.k === 'fn' &&
    a.name.startsWith('call:') &&
    a.name === b.name &&
    a.args.length === b.args.length
  );
}

/** A copy of `n` with symbols replaced where `f` returns a node. */
function mapSymbols(n: Node, f: (name: string) => Node | null): Node {
  const walk = (x: Node): Node => {
    switch (x.k) {
      case 'sym':
        return f(x.name) ?? x;
      case 'add':
        return { k: 'add', terms: x.terms.map(walk) };
      case 'mul':
        return { k: 'mul', factors: x.factors.map(walk) };
      case 'neg':
        return { k: 'neg', arg: walk(x.arg) };
      case 'pct':
        return { k: 'pct', arg: walk(x.arg) };
      case 'div':
        return { k: 'div', num: walk(x.num), den: walk(x.den) };
      case 'pow':
        return { k: 'pow', base: walk(x.base), exp: walk(x.exp) };
      case 'fn':
        return { k: 'fn', name: x.name, args: x.args.map(walk) };
      case 'pm':
        return { k: 'pm', left: x.left && walk(x.left), right: walk(x.right) };
      case 'group':
        return { ...x, items: x.items.map(walk) };
      case 'set':
      case 'list':
        return { k: x.k, items: x.items.map(walk) };
      case 'union':
        return { k: 'union', parts: x.parts.map(walk) };
      case 'rel':
        return { k: 'rel', ops: x.ops, sides: x.sides.map(walk) };
      case 'matrix':
        return { k: 'matrix', rows: x.rows.map((r) => r.map(walk)) };
      default:
        return x;
    }
  };
  return walk(n);
}

function letters(n: Node): string | null {
  if (n.k === 'text') return n.value.replace(/\s+/g, '');
  if (n.k === 'sym') return n.name;
  if (n.k === 'const' && n.name === 'e') return 'e';
  if (n.k === 'const' && n.name === 'i') return 'i';
  if (n.k === 'mul') {
    const parts = n.factors.map(letters);
    return parts.every((p) => p !== null) ? parts.join('') : null;
  }
  return null;
}

function renameVariables(gold: Node, pred: Node): Node {
  const gv = [...freeSymbols(gold)].sort();
  const pv = [...freeSymbols(pred)].sort();
  if (gv.length !== pv.length || gv.every((v, i) => v === pv[i])) return pred;
  const map = new Map(pv.map((v, i) => [v, gv[i]!]));
  return mapSymbols(pred, (name) => ({ k: 'sym', name: map.get(name) ?? name }));
}
