// Reverse-mode autodiff. Every backward rule is one entry of VJP, in the order of ops.ts: a
// function of (upstream gradient, forward node) returning one gradient per input, null where an
// input is not differentiable. Broadcasting is undone once, in `unbroadcast`; the walker below
// visits nodes in reverse order, accumulates by addition and skips nodes off the path.
import { type Dim, EngineError, type Node, type Tensor } from './graph';
import {
  add,
  cast,
  concat,
  cos,
  cumsum,
  div,
  equal,
  exp,
  expandLike,
  greater,
  less,
  log,
  matmul,
  maximum,
  minimum,
  mul,
  neg,
  pad,
  pow,
  reduceProd,
  reduceSum,
  reshape,
  reshapeLike,
  scatterElements,
  scatterND,
  shapeOf,
  sign,
  sin,
  split,
  sub,
  transpose,
  transposeLast,
  trilu,
  unsqueeze,
  where,
  zerosLike,
} from './ops';

/** Sums `g` over the axes along which `x` was broadcast, so the result has x's shape. */
export function unbroadcast(g: Tensor, x: Tensor): Tensor {
  const lead = g.rank - x.rank;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++)
    if (i < lead || (x.shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  if (axes.length === 0) return g;
  const summed = reduceSum(g, axes, true);
  return lead > 0 || x.rank === 0 ? reshapeLike(summed, x) : summed;
}

/** Values of a constant int64 input (axes, starts...). */
function constInts(t: Tensor | null): number[] {
  const init = t?.graph.rootGraph.initializers.find((i) => i.tensor === t);
  if (!init)
    throw new EngineError('engine.grad', `${t?.name ?? 'input'} must be a constant to differentiate this op`);
  return Array.from(init.data as ArrayLike<number | bigint>, Number);
}
const int = (n: Node, name: string, fallback = 0): number => {
  const a = n.attrs[name];
  return a && a.kind === 'int' ? a.value : fallback;
};

/** Re-inserts reduced axes when keepdims=0, so `g` broadcasts against the input. */
function keep(g: Tensor, n: Node): Tensor {
  const x = n.inputs[0]!;
  const axes = n.inputs[1] ? constInts(n.inputs[1]) : x.shape.map((_, i) => i);
  return int(n, 'keepdims', 1)
    ? g
    : unsqueeze(
        g,
        axes.map((a) => (a < 0 ? a + x.rank : a)),
      );
}

/** Element count of x divided by that of y, as a scalar of x's dtype (for ReduceMean). */
function ratio(x: Tensor, y: Tensor): Tensor | number {
  const num = (s: readonly Dim[]) =>
    s.every((d) => typeof d === 'number') ? (s as number[]).reduce((a, b) => a * b, 1) : null;
  const [nx, ny] = [num(x.shape), num(y.shape)];
  if (nx !== null && ny !== null) return nx / ny;
  return div(
    cast(reduceProd(shapeOf(x), [0], false), x.dtype),
    cast(reduceProd(shapeOf(y), [0], false), x.dtype),
  );
}

/** The float16 graph input (or initializer) that `t` is a float32 Cast of, else null. */
function halfSource(t: Tensor): Tensor | null {
  const p = t.producer;
  const src = p?.op === 'Cast' ? p.inputs[0] : null;
  return src && src.dtype === 'float16' && !src.producer && t.dtype === 'float32' ? src : null;
}

/** transposeLast(W) for the input gradient of x @ W. A frozen fp16 weight that the forward cast
 *  to float32 is re-cast here from its fp16 input instead of read from the forward's Cast, so
 *  onnxruntime can free each float32 copy after its forward MatMul rather than hold all of them
 *  until the backward (+4 bytes/parameter during a step). Transpose-then-Cast is a different
 *  pattern from the forward's Cast, so onnxruntime's common-subexpression elimination (level 1)
 *  does not merge the two; its MatMul-transpose fusion (level 2, after CSE) then moves the Cast
 *  in front of the Transpose and folds the Transpose into a FusedMatMul, so the backward reads a
 *  fresh float32 copy made right before it.
 *  Only the right operand: a weight on the left is the tied head (E·hᵀ), whose forward and
 *  backward sit next to each other around the loss; a re-cast there would be a second copy of
 *  the embedding alive over the same span (onnxruntime schedules it early), not a saving. */
function transposedWeight(w: Tensor): Tensor {
  const half = halfSource(w);
  return half ? cast(transposeLast(half), w.dtype) : transposeLast(w);
}

function matmulGrad(g: Tensor, a: Tensor, b: Tensor): [Tensor, Tensor] {
  if (a.rank < 2 || b.rank < 2)
    throw new EngineError('engine.grad', 'MatMul gradients need operands of rank >= 2');
  const da = unbroadcast(matmul(g, transposedWeight(b)), a);
  // x[..., k] @ W[k, n]: fold the batch axes into rows instead of a batched product + sum.
  const db =
    b.rank === 2 && a.rank > 2
      ? matmul(transposeLast(reshape(a, [-1, a.shape[a.rank - 1]])), reshape(g, [-1, g.shape[g.rank - 1]]))
      : unbroadcast(matmul(transposeLast(a), g), b);
  return [da, db];
}

function sliceGrad(g: Tensor, n: Node): Tensor {
  const x = n.inputs[0]!;
  const [starts, axes, steps] = [constInts(n.inputs[1]), constInts(n.inputs[3]), constInts(n.inputs[4])];
  if (steps.some((s) => s !== 1)) throw new EngineError('engine.grad', 'Slice gradients need step 1');
  const begins: Tensor[] = [];
  const ends: Tensor[] = [];
  for (let i = 0; i < x.rank; i++) {
    const k = axes.indexOf(i);
    const zero = x.graph.rootGraph.constant('int64', [1], [0]);
    if (k < 0) {
      begins.push(zero);
      ends.push(zero);
      continue;
    }
    // ONNX clamps a start to [0, dim] after adding dim to a negative one; so must the padding.
    const dim = shapeOf(x, i, i + 1);
    const d = x.shape[i];
    const s = starts[k];
    const begin =
      typeof d === 'number'
        ? x.graph.rootGraph.constant('int64', [1], [Math.min(Math.max(s < 0 ? s + d : s, 0), d)])
        : s >= 0
          ? minimum(dim, s)
          : maximum(add(dim, s), 0);
    begins.push(begin);
    ends.push(sub(sub(dim, begin), shapeOf(g, i, i + 1)));
  }
  return pad(g, concat([...begins, ...ends], 0), x.shape);
}

function concatGrad(g: Tensor, n: Node): Tensor[] {
  const axis = int(n, 'axis');
  const xs = n.inputs as Tensor[];
  const sizes = concat(
    xs.map((x) => shapeOf(x, axis, axis + 1)),
    0,
  );
  return split(
    g,
    sizes,
    axis,
    xs.map((x) => x.shape),
  );
}

type Rule = (g: Tensor, n: Node) => (Tensor | null)[];
const X = (n: Node, i = 0): Tensor => n.inputs[i]!;
const Y = (n: Node): Tensor => n.outputs[0];

/** Min/Max: the gradient goes to the input that won; on a tie each input gets half
 *  (torch.minimum/torch.maximum), so the two halves still add up to the upstream gradient. */
function tieSplit(g: Tensor, n: Node, firstWins: Tensor): Tensor[] {
  const [a, b] = [X(n, 0), X(n, 1)];
  const half = where(equal(a, b), mul(g, 0.5), 0);
  return [unbroadcast(where(firstWins, g, half), a), unbroadcast(where(firstWins, 0, sub(g, half)), b)];
}

export const VJP: Record<string, Rule> = {
  // elementwise unary
  Neg: (g) => [neg(g)],
  Exp: (g, n) => [mul(g, Y(n))],
  Log: (g, n) => [div(g, X(n))],
  Sqrt: (g, n) => [div(g, mul(Y(n), 2))],
  Reciprocal: (g, n) => [neg(mul(g, mul(Y(n), Y(n))))],
  Tanh: (g, n) => [mul(g, sub(1, mul(Y(n), Y(n))))],
  Sigmoid: (g, n) => [mul(g, mul(Y(n), sub(1, Y(n))))],
  Erf: (g, n) => [mul(g, mul(exp(neg(mul(X(n), X(n)))), 2 / Math.sqrt(Math.PI)))],
  Sin: (g, n) => [mul(g, cos(X(n)))],
  Cos: (g, n) => [neg(mul(g, sin(X(n))))],
  Abs: (g, n) => [mul(g, sign(X(n)))],
  Relu: (g, n) => [where(greater(X(n), 0), g, 0)],
  Identity: (g) => [g],
  // elementwise binary
  Add: (g, n) => [unbroadcast(g, X(n, 0)), unbroadcast(g, X(n, 1))],
  Sub: (g, n) => [unbroadcast(g, X(n, 0)), unbroadcast(neg(g), X(n, 1))],
  Mul: (g, n) => [unbroadcast(mul(g, X(n, 1)), X(n, 0)), unbroadcast(mul(g, X(n, 0)), X(n, 1))],
  Div: (g, n) => [
    unbroadcast(div(g, X(n, 1)), X(n, 0)),
    unbroadcast(neg(div(mul(g, Y(n)), X(n, 1))), X(n, 1)),
  ],
  // PyTorch's pow_backward: no base gradient where the exponent is 0 (0·x^-1 would be NaN at
  // x = 0); no exponent gradient where the base is <= 0 (PyTorch: 0 at base 0, NaN below 0, where
  // x^y exists only for integer y and is not differentiable in y; we send 0 rather than NaN).
  Pow: (g, n) => [
    unbroadcast(where(equal(X(n, 1), 0), 0, mul(g, mul(X(n, 1), pow(X(n, 0), sub(X(n, 1), 1))))), X(n, 0)),
    unbroadcast(where(greater(X(n, 0), 0), mul(g, mul(Y(n), log(X(n, 0)))), 0), X(n, 1)),
  ],
  Min: (g, n) => tieSplit(g, n, less(X(n, 0), X(n, 1))),
  Max: (g, n) => tieSplit(g, n, greater(X(n, 0), X(n, 1))),
  Where: (g, n) => [
    null,
    unbroadcast(where(X(n, 0), g, 0), X(n, 1)),
    unbroadcast(where(X(n, 0), 0, g), X(n, 2)),
  ],
  Cast: (g, n) => [cast(g, X(n).dtype)],
  // linear algebra
  MatMul: (g, n) => matmulGrad(g, X(n, 0), X(n, 1)),
  // reductions
  ReduceSum: (g, n) => [expandLike(keep(g, n), X(n)), null],
  ReduceMean: (g, n) => [div(expandLike(keep(g, n), X(n)), ratio(X(n), Y(n))), null],
  ReduceMax: (g, n) => {
    const mask = cast(equal(X(n), keep(Y(n), n)), X(n).dtype);
    return [div(mul(mask, keep(g, n)), reduceSum(mask, constInts(n.inputs[1]), true)), null];
  },
  Softmax: (g, n) => [mul(Y(n), sub(g, reduceSum(mul(g, Y(n)), [int(n, 'axis', -1)], true)))],
  LogSoftmax: (g, n) => [sub(g, mul(exp(Y(n)), reduceSum(g, [int(n, 'axis', -1)], true)))],
  // shapes
  Reshape: (g, n) => [reshapeLike(g, X(n)), null],
  Transpose: (g, n) => {
    const perm = n.attrs.perm?.kind === 'ints' ? n.attrs.perm.value : [];
    return [
      transpose(
        g,
        perm.map((_, i) => perm.indexOf(i)),
      ),
    ];
  },
  Expand: (g, n) => [unbroadcast(g, X(n)), null],
  Concat: (g, n) => concatGrad(g, n),
  Slice: (g, n) => [sliceGrad(g, n), null, null, null, null],
  Unsqueeze: (g, n) => [reshapeLike(g, X(n)), null],
  Squeeze: (g, n) => [reshapeLike(g, X(n)), null],
  Gather: (g, n) => {
    if (int(n, 'axis') !== 0)
      throw new EngineError('engine.grad', 'Gather gradients support axis 0 (embedding lookup)');
    return [scatterND(zerosLike(X(n)), unsqueeze(X(n, 1), [-1]), g, 'add'), null];
  },
  GatherElements: (g, n) => [scatterElements(zerosLike(X(n)), X(n, 1), g, int(n, 'axis'), 'add'), null],
  Trilu: (g, n) => [trilu(g, int(n, 'upper') === 1, X(n, 1)), null],
  CumSum: (g, n) => [
    cumsum(g, constInts(n.inputs[1])[0], {
      exclusive: int(n, 'exclusive') === 1,
      reverse: int(n, 'reverse') !== 1,
    }),
    null,
  ],
};

/** Ops whose outputs are integer-valued, boolean or piecewise constant: zero gradient, so the
 *  walker does not follow them (shape arithmetic, masks, comparisons). */
export const NO_GRADIENT = new Set([
  'Shape',
  'ConstantOfShape',
  'Equal',
  'Less',
  'Greater',
  'LessOrEqual',
  'GreaterOrEqual',
  'And',
  'Or',
  'Not',
  'ArgMax',
  'Sign',
  'Range',
  'Size',
  'Floor',
  'Ceil',
  'Round',
  'BitwiseXor',
  'BitwiseAnd',
  'BitShift',
]);

/** Gradients of `loss` (summed if not scalar, or weighted by `seed`) with respect to `wrt`. */
export function grad(loss: Tensor, wrt: readonly Tensor[], seed?: Tensor): Tensor[] {
  const onPath = new Set<Node>();
  const stack = [loss];
  while (stack.length > 0) {
    const p = stack.pop()!.producer;
    if (!p || onPath.has(p)) continue;
    onPath.add(p);
    for (const i of p.inputs) if (i) stack.push(i);
  }
  const nodes = [...onPath].sort((a, b) => a.id - b.id);
  const needs = new Set<Tensor>(wrt);
  for (const n of nodes)
    if (!NO_GRADIENT.has(n.op) && n.inputs.some((i) => i && needs.has(i)))
      for (const o of n.outputs) needs.add(o);
  const grads = new Map<Tensor, Tensor>([
    [loss, seed ?? expandLike(loss.graph.rootGraph.scalar(1, loss.dtype), loss)],
  ]);
  for (const n of nodes.reverse()) {
    const g = grads.get(n.outputs[0]);
    if (!g || !needs.has(n.outputs[0])) continue;
    const rule = VJP[n.op];
    if (!rule || n.outputs.length !== 1)
      throw new EngineError('engine.grad', `no gradient rule for ${n.op} (on the path to the loss)`);
    rule(g, n).forEach((gi, i) => {
      const x = n.inputs[i];
      if (gi && x && needs.has(x)) grads.set(x, grads.has(x) ? add(grads.get(x)!, gi) : gi);
    });
  }
  return wrt.map((w) => grads.get(w) ?? zerosLike(w));
}
