// The forward op set: each function appends exactly one ONNX node (opset 23, default domain)
// and infers the output's dtype and symbolic shape. Composite ops live in nn.ts, their
// gradients come from these ops' rules in grad.ts.
import { type DType, ONNX_DTYPE as ONNX_CODE } from './dtype';
import {
  type Attr,
  attr,
  type Dim,
  EngineError,
  type Graph,
  innermost,
  type OutputSpec,
  type Shape,
  Tensor,
} from './graph';

export type TensorLike = Tensor | number;

/** Stands for "to the end" in Slice; below 2^63 so it survives int64 encoding exactly. */
const INT64_MAX = 2 ** 62;

function node(
  op: string,
  inputs: readonly (Tensor | null)[],
  attrs: Record<string, Attr>,
  out: OutputSpec,
): Tensor {
  return innermost(inputs).addNode(op, inputs, attrs, [out])[0];
}

/** Any ONNX op, for ops outside the differentiable set (sampling, fused kernels such as
 *  RMSNormalization or com.microsoft ops). Output dtypes/shapes are declared by the caller. */
export function customOp(
  op: string,
  inputs: readonly (Tensor | null)[],
  outputs: readonly OutputSpec[],
  options: { attrs?: Record<string, Attr>; domain?: string; graph?: Graph } = {},
): Tensor[] {
  const g = innermost(inputs, options.graph);
  return g.addNode(op, inputs, options.attrs ?? {}, outputs, options.domain ?? '');
}

function lift(x: TensorLike, like: Tensor): Tensor {
  return x instanceof Tensor ? x : like.graph.rootGraph.scalar(x, like.dtype);
}

function pair(a: TensorLike, b: TensorLike): [Tensor, Tensor] {
  if (a instanceof Tensor) return [a, lift(b, a)];
  if (b instanceof Tensor) return [lift(a, b), b];
  throw new EngineError('engine.op', 'a binary op needs at least one tensor operand');
}

/** Numpy broadcasting of symbolic shapes; names that differ are assumed equal at run time. */
export function broadcastShapes(a: Shape, b: Shape): Dim[] {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = i - n + a.length >= 0 ? a[i - n + a.length] : 1;
    const y = i - n + b.length >= 0 ? b[i - n + b.length] : 1;
    if (x === 1) out.push(y);
    else if (y === 1 || x === y || typeof y === 'string') out.push(x);
    else if (typeof x === 'string') out.push(y);
    else throw new EngineError('engine.shape', `cannot broadcast [${a.join(', ')}] with [${b.join(', ')}]`);
  }
  return out;
}

function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new EngineError('engine.axis', `axis ${axis} out of range for rank ${rank}`);
  return a;
}

// ---- elementwise unary ----
const unary =
  (op: string) =>
  (x: Tensor): Tensor =>
    node(op, [x], {}, { dtype: x.dtype, shape: x.shape });
export const neg = unary('Neg');
export const exp = unary('Exp');
export const log = unary('Log');
export const sqrt = unary('Sqrt');
export const reciprocal = unary('Reciprocal');
export const tanh = unary('Tanh');
export const sigmoid = unary('Sigmoid');
export const erf = unary('Erf');
export const sin = unary('Sin');
export const cos = unary('Cos');
export const abs = unary('Abs');
export const relu = unary('Relu');
export const sign = unary('Sign');
export const identity = unary('Identity');
export const not = (x: Tensor): Tensor => node('Not', [x], {}, { dtype: 'bool', shape: x.shape });

// ---- elementwise binary (numpy broadcasting) ----
const binary =
  (op: string) =>
  (a: TensorLike, b: TensorLike): Tensor => {
    const [x, y] = pair(a, b);
    return node(op, [x, y], {}, { dtype: x.dtype, shape: broadcastShapes(x.shape, y.shape) });
  };
export const add = binary('Add');
export const sub = binary('Sub');
export const mul = binary('Mul');
export const div = binary('Div');
export const pow = binary('Pow');
/** Elementwise minimum/maximum of two tensors (ONNX Min/Max with two inputs). */
export const minimum = binary('Min');
export const maximum = binary('Max');

const compare =
  (op: string) =>
  (a: TensorLike, b: TensorLike): Tensor => {
    const [x, y] = pair(a, b);
    return node(op, [x, y], {}, { dtype: 'bool', shape: broadcastShapes(x.shape, y.shape) });
  };
export const equal = compare('Equal');
export const less = compare('Less');
export const greater = compare('Greater');
export const lessOrEqual = compare('LessOrEqual');
export const greaterOrEqual = compare('GreaterOrEqual');
export const and = compare('And');
export const or = compare('Or');

export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = pair(a, b);
  return node(
    'Where',
    [cond, x, y],
    {},
    { dtype: x.dtype, shape: broadcastShapes(cond.shape, broadcastShapes(x.shape, y.shape)) },
  );
}

export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  return node('Cast', [x], { to: attr.int(ONNX_CODE[dtype]) }, { dtype, shape: x.shape });
}

// ---- linear algebra ----
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.rank < 1 || b.rank < 1) throw new EngineError('engine.matmul', 'MatMul needs tensors of rank >= 1');
  const as = a.rank === 1 ? [1, a.shape[0]] : a.shape;
  const bs = b.rank === 1 ? [b.shape[0], 1] : b.shape;
  const batch = broadcastShapes(as.slice(0, -2), bs.slice(0, -2));
  const shape: Dim[] = [...batch];
  if (a.rank > 1) shape.push(as[as.length - 2]);
  if (b.rank > 1) shape.push(bs[bs.length - 1]);
  return node('MatMul', [a, b], {}, { dtype: a.dtype, shape });
}

// ---- reductions (axes as an int64 input, opset 18+) ----
function reduce(
  op: string,
  x: Tensor,
  axes: readonly number[] | undefined,
  keepdims: boolean,
  dtype = x.dtype,
): Tensor {
  const all = axes === undefined ? x.shape.map((_, i) => i) : axes.map((a) => normAxis(a, x.rank));
  const shape = keepdims
    ? x.shape.map((d, i) => (all.includes(i) ? 1 : d))
    : x.shape.filter((_, i) => !all.includes(i));
  const axesT = x.graph.rootGraph.constant('int64', [all.length], all);
  return node(op, [x, axesT], { keepdims: attr.int(keepdims ? 1 : 0) }, { dtype, shape });
}
export const reduceSum = (x: Tensor, axes?: readonly number[], keepdims = true): Tensor =>
  reduce('ReduceSum', x, axes, keepdims);
export const reduceMean = (x: Tensor, axes?: readonly number[], keepdims = true): Tensor =>
  reduce('ReduceMean', x, axes, keepdims);
export const reduceMax = (x: Tensor, axes?: readonly number[], keepdims = true): Tensor =>
  reduce('ReduceMax', x, axes, keepdims);
export const reduceProd = (x: Tensor, axes?: readonly number[], keepdims = true): Tensor =>
  reduce('ReduceProd', x, axes, keepdims);

export function softmax(x: Tensor, axis = -1): Tensor {
  return node('Softmax', [x], { axis: attr.int(normAxis(axis, x.rank)) }, { dtype: x.dtype, shape: x.shape });
}
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return node(
    'LogSoftmax',
    [x],
    { axis: attr.int(normAxis(axis, x.rank)) },
    { dtype: x.dtype, shape: x.shape },
  );
}

export function argMax(x: Tensor, axis = -1, keepdims = false): Tensor {
  const a = normAxis(axis, x.rank);
  const shape = keepdims ? x.shape.map((d, i) => (i === a ? 1 : d)) : x.shape.filter((_, i) => i !== a);
  return node(
    'ArgMax',
    [x],
    { axis: attr.int(a), keepdims: attr.int(keepdims ? 1 : 0) },
    { dtype: 'int64', shape },
  );
}

// ---- shapes ----
/** The run-time shape of `x` (or of axes [start, end)) as int64 [n]; a negative `start` alone
 *  means that one axis (shapeOf(x, -1) is the last dim as int64 [1]). */
export function shapeOf(x: Tensor, start = 0, end?: number): Tensor {
  const s = start < 0 ? start + x.rank : start;
  const e = end === undefined ? (start < 0 ? s + 1 : x.rank) : end < 0 ? end + x.rank : end;
  if (s < 0 || e > x.rank || e < s)
    throw new EngineError('engine.axis', `shape slice [${start}, ${end}) out of range for rank ${x.rank}`);
  return node('Shape', [x], { start: attr.int(s), end: attr.int(e) }, { dtype: 'int64', shape: [e - s] });
}

/** The run-time size of a dim: a number, a named dim (read from the input that declared it),
 *  or axis `axis` of a tensor. Returns int64 [1]. */
export function dimSize(g: Graph, d: Dim | Tensor): Tensor {
  if (d instanceof Tensor) return d;
  if (typeof d === 'number') return g.rootGraph.constant('int64', [1], [d]);
  return g.dimTensor(d, (source, axis) => shapeOf(source, axis, axis + 1));
}

/** Builds an int64 [n] shape tensor from numbers, dim names and int64 [1] tensors. */
export function shapeTensor(g: Graph, dims: readonly (Dim | Tensor)[]): Tensor {
  if (dims.every((d) => typeof d === 'number'))
    return g.rootGraph.constant('int64', [dims.length], dims as number[]);
  return concat(
    dims.map((d) => dimSize(g, d)),
    0,
  );
}

let freshDim = 0;
function anonDim(): string {
  freshDim += 1;
  return `_d${freshDim}`;
}

/** Reshape to dims given as numbers (-1 once at most), dim names, or int64 [1] tensors. */
export function reshape(x: Tensor, dims: readonly (Dim | Tensor)[]): Tensor {
  const g = x.graph;
  let shape: Dim[] = dims.map((d) => (d instanceof Tensor ? anonDim() : d));
  const known = x.shape.every((d) => typeof d === 'number') && shape.filter((d) => d === -1).length === 1;
  if (known) {
    const total = (x.shape as number[]).reduce((a, b) => a * b, 1);
    const rest = shape.filter((d) => d !== -1).reduce<number>((a, b) => a * (b as number), 1);
    shape = shape.map((d) => (d === -1 ? total / rest : d));
  } else shape = shape.map((d) => (d === -1 ? anonDim() : d));
  if (shape.every((d, i) => d === x.shape[i]) && shape.length === x.rank) return x;
  return node('Reshape', [x, shapeTensor(g, dims)], {}, { dtype: x.dtype, shape });
}

/** Reshape `x` to the run-time shape of `like` (used by gradients). */
export function reshapeLike(x: Tensor, like: Tensor): Tensor {
  return node('Reshape', [x, shapeOf(like)], {}, { dtype: x.dtype, shape: like.shape });
}

export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.length !== x.rank)
    throw new EngineError('engine.transpose', `perm of length ${perm.length} for rank ${x.rank}`);
  return node(
    'Transpose',
    [x],
    { perm: attr.ints(perm) },
    { dtype: x.dtype, shape: perm.map((p) => x.shape[p]) },
  );
}

/** Swaps the last two axes. */
export function transposeLast(x: Tensor): Tensor {
  const perm = x.shape.map((_, i) => i);
  [perm[x.rank - 2], perm[x.rank - 1]] = [perm[x.rank - 1], perm[x.rank - 2]];
  return transpose(x, perm);
}

export function expand(x: Tensor, dims: readonly (Dim | Tensor)[]): Tensor {
  const shape = broadcastShapes(
    x.shape,
    dims.map((d) => (d instanceof Tensor ? anonDim() : d)),
  );
  return node('Expand', [x, shapeTensor(x.graph, dims)], {}, { dtype: x.dtype, shape });
}

/** Expand `x` to the run-time shape of `like`. */
export function expandLike(x: Tensor, like: Tensor): Tensor {
  return node(
    'Expand',
    [x, shapeOf(like)],
    {},
    { dtype: x.dtype, shape: broadcastShapes(x.shape, like.shape) },
  );
}

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new EngineError('engine.concat', 'concat of nothing');
  const a = normAxis(axis, xs[0].rank);
  const parts = xs.map((t) => t.shape[a]);
  const size: Dim = parts.every((p) => typeof p === 'number')
    ? (parts as number[]).reduce((s, p) => s + p, 0)
    : parts.join('+');
  const shape = xs[0].shape.map((d, i) => (i === a ? size : d));
  return node('Concat', xs, { axis: attr.int(a) }, { dtype: xs[0].dtype, shape });
}

/** Slice with constant starts/ends (INT64_MAX-safe: pass Infinity for "to the end"). */
export function slice(
  x: Tensor,
  starts: readonly number[],
  ends: readonly number[],
  axes?: readonly number[],
  steps?: readonly number[],
): Tensor {
  const ax = (axes ?? starts.map((_, i) => i)).map((a) => normAxis(a, x.rank));
  const st = steps ?? starts.map(() => 1);
  const clampEnd = (e: number) =>
    e === Number.POSITIVE_INFINITY ? INT64_MAX : e === Number.NEGATIVE_INFINITY ? -INT64_MAX : e;
  const shape = x.shape.map((d, i) => {
    const k = ax.indexOf(i);
    if (k < 0) return d;
    const [s, e, step] = [starts[k], ends[k], st[k]];
    if (typeof d === 'number') {
      const norm = (v: number) => Math.min(Math.max(v < 0 ? v + d : v, 0), d);
      return Math.max(0, Math.ceil((norm(e) - norm(s)) / step));
    }
    if (s === 0 && step === 1 && e >= INT64_MAX) return d;
    if (s >= 0 && e >= 0 && e < INT64_MAX && step === 1) return e - s;
    return anonDim();
  });
  const g = x.graph.rootGraph;
  const inputs = [
    x,
    g.constant('int64', [starts.length], starts),
    g.constant('int64', [ends.length], ends.map(clampEnd)),
    g.constant('int64', [ax.length], ax),
    g.constant('int64', [st.length], st),
  ];
  return node('Slice', inputs, {}, { dtype: x.dtype, shape });
}

export function unsqueeze(x: Tensor, axes: readonly number[]): Tensor {
  const rank = x.rank + axes.length;
  const ax = axes.map((a) => normAxis(a, rank)).sort((a, b) => a - b);
  const shape: Dim[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) shape.push(ax.includes(i) ? 1 : x.shape[j++]);
  return node(
    'Unsqueeze',
    [x, x.graph.rootGraph.constant('int64', [ax.length], ax)],
    {},
    { dtype: x.dtype, shape },
  );
}

export function squeeze(x: Tensor, axes: readonly number[]): Tensor {
  const ax = axes.map((a) => normAxis(a, x.rank));
  const shape = x.shape.filter((_, i) => !ax.includes(i));
  return node(
    'Squeeze',
    [x, x.graph.rootGraph.constant('int64', [ax.length], ax)],
    {},
    { dtype: x.dtype, shape },
  );
}

/** Embedding-style lookup: rows of `x` along `axis` picked by integer `indices`. */
export function gather(x: Tensor, indices: Tensor, axis = 0): Tensor {
  const a = normAxis(axis, x.rank);
  const shape = [...x.shape.slice(0, a), ...indices.shape, ...x.shape.slice(a + 1)];
  return node('Gather', [x, indices], { axis: attr.int(a) }, { dtype: x.dtype, shape });
}

/** Per-position pick along `axis` (e.g. the log-prob of each chosen token). */
export function gatherElements(x: Tensor, indices: Tensor, axis = -1): Tensor {
  const a = normAxis(axis, x.rank);
  return node(
    'GatherElements',
    [x, indices],
    { axis: attr.int(a) },
    { dtype: x.dtype, shape: indices.shape },
  );
}

export function scatterND(
  data: Tensor,
  indices: Tensor,
  updates: Tensor,
  reduction: 'none' | 'add' = 'none',
): Tensor {
  return node(
    'ScatterND',
    [data, indices, updates],
    { reduction: attr.string(reduction) },
    { dtype: data.dtype, shape: data.shape },
  );
}

export function scatterElements(
  data: Tensor,
  indices: Tensor,
  updates: Tensor,
  axis: number,
  reduction: 'none' | 'add' = 'none',
): Tensor {
  const a = normAxis(axis, data.rank);
  return node(
    'ScatterElements',
    [data, indices, updates],
    { axis: attr.int(a), reduction: attr.string(reduction) },
    { dtype: data.dtype, shape: data.shape },
  );
}

/** Keeps the lower (upper=false) or upper triangle of the last two axes, offset by `k`. */
export function trilu(x: Tensor, upper: boolean, k: TensorLike = 0): Tensor {
  const kT = k instanceof Tensor ? k : x.graph.rootGraph.scalar(k, 'int64');
  return node('Trilu', [x, kT], { upper: attr.int(upper ? 1 : 0) }, { dtype: x.dtype, shape: x.shape });
}

export function cumsum(
  x: Tensor,
  axis: number,
  options: { exclusive?: boolean; reverse?: boolean } = {},
): Tensor {
  const a = normAxis(axis, x.rank);
  return node(
    'CumSum',
    [x, x.graph.rootGraph.scalar(a, 'int64')],
    { exclusive: attr.int(options.exclusive ? 1 : 0), reverse: attr.int(options.reverse ? 1 : 0) },
    { dtype: x.dtype, shape: x.shape },
  );
}

/** Zeros/ones/fill of a run-time shape. */
export function fill(
  g: Graph,
  dims: readonly (Dim | Tensor)[],
  value: number,
  dtype: DType = 'float32',
): Tensor {
  const shape = dims.map((d) => (d instanceof Tensor ? anonDim() : d));
  const data = { dtype, dims: [1], data: g.rootGraph.constantData(dtype, value) };
  return node(
    'ConstantOfShape',
    [shapeTensor(g, dims)],
    { value: { kind: 'tensor', value: data } },
    { dtype, shape },
  );
}

/** Zeros shaped like `like` at run time. */
export function zerosLike(like: Tensor, dtype: DType = like.dtype): Tensor {
  const data = { dtype, dims: [1], data: like.graph.rootGraph.constantData(dtype, 0) };
  return node(
    'ConstantOfShape',
    [shapeOf(like)],
    { value: { kind: 'tensor', value: data } },
    { dtype, shape: like.shape },
  );
}

export function range(
  start: TensorLike,
  limit: TensorLike,
  delta: TensorLike,
  dtype: DType = 'int64',
): Tensor {
  const anchor = [start, limit, delta].find((v) => v instanceof Tensor) as Tensor | undefined;
  if (!anchor)
    throw new EngineError('engine.range', 'range needs at least one tensor bound (use a constant otherwise)');
  const g = anchor.graph.rootGraph;
  const lift0 = (v: TensorLike) => (v instanceof Tensor ? v : g.scalar(v, dtype));
  return node('Range', [lift0(start), lift0(limit), lift0(delta)], {}, { dtype, shape: [anonDim()] });
}

/** Pads with zeros; `pads` is an int64 [2*rank] tensor (begins then ends). */
export function pad(x: Tensor, pads: Tensor, shape: Shape = x.shape.map(() => anonDim())): Tensor {
  return node('Pad', [x, pads], { mode: attr.string('constant') }, { dtype: x.dtype, shape });
}

/** Splits along `axis` into pieces of run-time sizes `sizes` (int64 [n]). */
export function split(x: Tensor, sizes: Tensor, axis: number, shapes: readonly Shape[]): Tensor[] {
  const a = normAxis(axis, x.rank);
  return innermost([x, sizes]).addNode(
    'Split',
    [x, sizes],
    { axis: attr.int(a) },
    shapes.map((shape) => ({ dtype: x.dtype, shape })),
  );
}

// ---- integer / piecewise-constant ops (no gradient) ----
export const floor = unary('Floor');
export const ceil = unary('Ceil');
export const round = unary('Round');
export const bitwiseXor = binary('BitwiseXor');
export const bitwiseAnd = binary('BitwiseAnd');

/** Remainder; integer types take the sign of the divisor (Python), floats use fmod (C). */
export function mod(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = pair(a, b);
  const fmod = x.dtype.startsWith('float') || x.dtype === 'bfloat16' ? 1 : 0;
  return node(
    'Mod',
    [x, y],
    { fmod: attr.int(fmod) },
    { dtype: x.dtype, shape: broadcastShapes(x.shape, y.shape) },
  );
}

/** Logical shift of unsigned integers (uint8/32/64 only in ONNX). */
export function bitShift(x: Tensor, bits: TensorLike, direction: 'LEFT' | 'RIGHT'): Tensor {
  const [a, b] = pair(x, bits);
  return node(
    'BitShift',
    [a, b],
    { direction: attr.string(direction) },
    { dtype: a.dtype, shape: broadcastShapes(a.shape, b.shape) },
  );
}

export const reduceMin = (x: Tensor, axes?: readonly number[], keepdims = true): Tensor =>
  reduce('ReduceMin', x, axes, keepdims);

/** The k largest (or smallest) values along `axis`, sorted, with their int64 indices. */
export function topK(
  x: Tensor,
  k: Tensor | number,
  axis = -1,
  largest = true,
): { values: Tensor; indices: Tensor } {
  const a = normAxis(axis, x.rank);
  const kT = k instanceof Tensor ? k : x.graph.rootGraph.constant('int64', [1], [k]);
  const shape = x.shape.map((d, i) => (i === a ? (typeof k === 'number' ? k : anonDim()) : d));
  const [values, indices] = innermost([x, kT]).addNode(
    'TopK',
    [x, kT],
    { axis: attr.int(a), largest: attr.int(largest ? 1 : 0), sorted: attr.int(1) },
    [
      { dtype: x.dtype, shape },
      { dtype: 'int64', shape },
    ],
  );
  return { values, indices };
}

const GOLDEN = 0x9e3779b97f4a7c15n;
const MIX1 = 0xbf58476d1ce4e5b9n;
const MIX2 = 0x94d049bb133111ebn;

/**
 * Uniform numbers in (0, 1), a pure function of (seed, stream, element index): a splitmix64 hash
 * in uint64 graph arithmetic, 24 bits per value. ONNX Runtime's CPU provider has no random
 * kernels at opset 23 (RandomUniformLike, Bernoulli), and a hash is reproducible across devices.
 * Feed a new `seed` (int64 scalar) per step for fresh values. Off the gradient path.
 */
export function randomUniform(
  g: Graph,
  dims: readonly (Dim | Tensor)[],
  seed: Tensor,
  options: { dtype?: DType; stream?: number } = {},
): Tensor {
  const root = g.rootGraph;
  const u64 = (v: bigint) => root.constant('uint64', [], new BigUint64Array([v]));
  const shape = shapeTensor(g, dims);
  const count = reduceProd(shape, [0], false);
  const index = cast(range(root.scalar(0, 'int64'), count, root.scalar(1, 'int64')), 'uint64');
  const mix = (x: Tensor): Tensor => {
    const a = mul(bitwiseXor(x, bitShift(x, u64(30n), 'RIGHT')), u64(MIX1));
    const b = mul(bitwiseXor(a, bitShift(a, u64(27n), 'RIGHT')), u64(MIX2));
    return bitwiseXor(b, bitShift(b, u64(31n), 'RIGHT'));
  };
  // The (seed, stream) key is hashed first, so nearby seeds give unrelated sequences.
  const stream = u64((BigInt(options.stream ?? 0) * MIX2 + 1n) & 0xffffffffffffffffn);
  const key = mix(add(mul(cast(reshape(seed, []), 'uint64'), u64(GOLDEN)), stream));
  const z = mix(add(mul(add(index, 1), u64(GOLDEN)), key));
  const top24 = cast(bitShift(z, u64(40n), 'RIGHT'), 'float32');
  const u = mul(add(top24, 0.5), 2 ** -24);
  return reshape(cast(u, options.dtype ?? 'float32'), dims);
}
