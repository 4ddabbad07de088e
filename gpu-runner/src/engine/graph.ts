// The typed graph: tensors with a dtype and a symbolic shape (numbers or named dims such as
// 'batch' or 'seq'), nodes that are exactly ONNX nodes, and subgraphs (Loop bodies) that may
// read tensors of the graphs around them.
import { allocate, type DType, isFloat, type TypedArray, toTypedArray } from './dtype';

/** A dimension: a fixed size, or a name that is bound at run time (same name ⇒ same size). */
export type Dim = number | string;
export type Shape = readonly Dim[];

export type Attr =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'ints'; value: readonly number[] }
  | { kind: 'floats'; value: readonly number[] }
  | { kind: 'string'; value: string }
  | { kind: 'tensor'; value: { dtype: DType; dims: readonly number[]; data: TypedArray } }
  | { kind: 'graph'; value: Graph };

export const attr = {
  int: (value: number): Attr => ({ kind: 'int', value }),
  float: (value: number): Attr => ({ kind: 'float', value }),
  ints: (value: readonly number[]): Attr => ({ kind: 'ints', value }),
  floats: (value: readonly number[]): Attr => ({ kind: 'floats', value }),
  string: (value: string): Attr => ({ kind: 'string', value }),
  graph: (value: Graph): Attr => ({ kind: 'graph', value }),
};

/** How a tensor came to be: a value fed at run time, a trainable parameter (also fed), a stored
 *  initializer (frozen weights, constants), the output of a node, or a subgraph's formal input. */
export type TensorKind = 'input' | 'param' | 'initializer' | 'node' | 'subgraph-input';

export class Tensor {
  constructor(
    readonly graph: Graph,
    readonly name: string,
    readonly dtype: DType,
    readonly shape: Shape,
    readonly kind: TensorKind,
    readonly producer: Node | null = null,
  ) {}
  get rank(): number {
    return this.shape.length;
  }
  toString(): string {
    return `${this.name}: ${this.dtype}[${this.shape.join(', ')}]`;
  }
}

export interface Node {
  readonly op: string;
  readonly domain: string;
  readonly inputs: readonly (Tensor | null)[];
  readonly outputs: readonly Tensor[];
  readonly attrs: Readonly<Record<string, Attr>>;
  readonly graph: Graph;
  readonly id: number;
}

export interface OutputSpec {
  dtype: DType;
  shape: Shape;
}

export class EngineError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'EngineError';
  }
}

/** A graph under construction. The root graph owns inputs, params and initializers; a subgraph
 *  (Loop body) has a parent and its own formal inputs. */
export class Graph {
  readonly nodes: Node[] = [];
  readonly inputs: Tensor[] = [];
  /** Formal outputs of a subgraph (set by the Loop builder); root outputs are named at build time. */
  outputs: Tensor[] = [];
  readonly initializers: { tensor: Tensor; data: TypedArray }[] = [];
  /** Where a named dim can be read at run time: the first declared input carrying it. */
  readonly dimSources = new Map<string, { tensor: Tensor; axis: number }>();
  private readonly root: Graph;
  private counter = { value: 0 };
  private readonly scalarCache = new Map<string, Tensor>();
  private readonly dimCache = new Map<string, Tensor>();

  constructor(
    readonly name = 'cgrpo',
    readonly parent: Graph | null = null,
  ) {
    this.root = parent ? parent.root : this;
    if (parent) this.counter = parent.counter;
  }

  get depth(): number {
    return this.parent ? this.parent.depth + 1 : 0;
  }

  freshName(prefix: string): string {
    this.counter.value += 1;
    return `${prefix}_${this.counter.value}`;
  }

  private checkName(name: string): void {
    if (!/^[A-Za-z_][A-Za-z0-9_.:/-]*$/.test(name))
      throw new EngineError(
        'engine.name',
        `invalid tensor name ${JSON.stringify(name)}: use letters, digits, _ . : / -`,
      );
    if (this.root.allNames.has(name))
      throw new EngineError(
        'engine.name',
        `tensor name ${JSON.stringify(name)} is already used in this graph`,
      );
    this.root.allNames.add(name);
  }
  private readonly allNames = new Set<string>();

  private declare(name: string, dtype: DType, shape: Shape, kind: TensorKind): Tensor {
    this.checkName(name);
    const t = new Tensor(this, name, dtype, shape, kind);
    this.inputs.push(t);
    this.registerDims(t);
    return t;
  }

  /** A value fed at every run (token ids, masks, advantages...). */
  input(name: string, dtype: DType, shape: Shape): Tensor {
    if (this.parent) throw new EngineError('engine.subgraph', 'declare inputs on the root graph');
    return this.declare(name, dtype, shape, 'input');
  }

  /** A trainable parameter: a graph input, so one compiled session serves every step. */
  param(name: string, dtype: DType, shape: Shape): Tensor {
    if (this.parent) throw new EngineError('engine.subgraph', 'declare params on the root graph');
    if (!isFloat(dtype))
      throw new EngineError('engine.param', `param ${name} must be a float type, got ${dtype}`);
    return this.declare(name, dtype, shape, 'param');
  }

  /** A frozen tensor stored inside the model (uploaded once per session on GPU providers). */
  initializer(
    name: string,
    dtype: DType,
    dims: readonly number[],
    data: TypedArray | ArrayLike<number>,
  ): Tensor {
    const size = dims.reduce((a, b) => a * b, 1);
    if (data.length !== size)
      throw new EngineError(
        'engine.initializer',
        `${name}: ${data.length} values for dims [${dims.join(', ')}]`,
      );
    this.root.checkName(name);
    const typed = isTypedArrayOf(dtype, data) ? data : toTypedArray(dtype, data as ArrayLike<number>);
    const t = new Tensor(this.root, name, dtype, dims, 'initializer');
    this.root.initializers.push({ tensor: t, data: typed });
    return t;
  }

  /** A scalar constant (rank 0), shared per (dtype, value). */
  scalar(value: number, dtype: DType = 'float32'): Tensor {
    const key = `${dtype}:${Object.is(value, -0) ? '-0' : value}`;
    const cached = this.root.scalarCache.get(key);
    if (cached) return cached;
    const data = this.constantData(dtype, value);
    const t = this.root.initializer(this.root.freshName('const'), dtype, [], data);
    this.root.scalarCache.set(key, t);
    return t;
  }

  /** One value as the typed array of `dtype` (for ConstantOfShape and friends). */
  constantData(dtype: DType, value: number): TypedArray {
    const data = allocate(dtype, 1);
    if (data instanceof BigInt64Array || data instanceof BigUint64Array) data[0] = BigInt(value);
    else (data as Float32Array)[0] = value;
    return data;
  }

  /** A constant tensor of the given dims. */
  constant(dtype: DType, dims: readonly number[], values: TypedArray | ArrayLike<number>): Tensor {
    return this.root.initializer(this.root.freshName('const'), dtype, dims, values);
  }

  /** Appends a node; used by ops.ts. `graph` is the innermost graph among the inputs. */
  addNode(
    op: string,
    inputs: readonly (Tensor | null)[],
    attrs: Record<string, Attr>,
    outputs: readonly OutputSpec[],
    domain = '',
  ): Tensor[] {
    this.counter.value += 1;
    const id = this.counter.value;
    const outs: Tensor[] = [];
    const node: Node = { op, domain, inputs, outputs: outs, attrs, graph: this, id };
    for (const spec of outputs)
      outs.push(new Tensor(this, this.freshName(op.toLowerCase()), spec.dtype, spec.shape, 'node', node));
    for (const t of outs) this.registerDims(t);
    this.nodes.push(node);
    return outs;
  }

  /** The run-time size of a named dim as an int64 tensor of shape [1]. */
  dimTensor(name: string, build: (source: Tensor, axis: number) => Tensor): Tensor {
    for (let g: Graph | null = this; g; g = g.parent) {
      const cached = g.dimCache.get(name);
      if (cached) return cached;
      const source = g.dimSources.get(name);
      if (!source) continue;
      const t = build(source.tensor, source.axis);
      g.dimCache.set(name, t);
      return t;
    }
    throw new EngineError(
      'engine.dim',
      `dim ${JSON.stringify(name)} is not carried by any tensor in scope; pass its size as a tensor`,
    );
  }

  /** Records where each named dim of `t` can be read at run time, unless already known in scope. */
  private registerDims(t: Tensor): void {
    t.shape.forEach((d, axis) => {
      if (typeof d !== 'string') return;
      for (let g: Graph | null = this; g; g = g.parent) if (g.dimSources.has(d)) return;
      this.dimSources.set(d, { tensor: t, axis });
    });
  }

  /** Whether `g` is this graph or nested inside it. */
  contains(g: Graph): boolean {
    for (let x: Graph | null = g; x; x = x.parent) if (x === this) return true;
    return false;
  }

  get rootGraph(): Graph {
    return this.root;
  }

  /** Formal input of a subgraph (Loop body). */
  subgraphInput(name: string, dtype: DType, shape: Shape): Tensor {
    if (!this.parent) throw new EngineError('engine.subgraph', 'subgraphInput is for Loop bodies');
    this.checkName(name);
    const t = new Tensor(this, name, dtype, shape, 'subgraph-input');
    this.inputs.push(t);
    this.registerDims(t);
    return t;
  }
}

function isTypedArrayOf(dtype: DType, data: unknown): data is TypedArray {
  switch (dtype) {
    case 'float32':
      return data instanceof Float32Array;
    case 'float64':
      return data instanceof Float64Array;
    case 'float16':
    case 'bfloat16':
      return data instanceof Uint16Array;
    case 'int64':
      return data instanceof BigInt64Array;
    case 'int32':
      return data instanceof Int32Array;
    case 'uint32':
      return data instanceof Uint32Array;
    case 'uint64':
      return data instanceof BigUint64Array;
    case 'int8':
      return data instanceof Int8Array;
    case 'uint8':
    case 'bool':
      return data instanceof Uint8Array;
  }
}

/** The innermost graph among the tensors (they must lie on one chain of nested graphs). */
export function innermost(tensors: readonly (Tensor | null)[], fallback?: Graph): Graph {
  let g: Graph | undefined = fallback;
  for (const t of tensors) {
    if (!t) continue;
    if (!g || g.contains(t.graph)) g = t.graph;
    else if (!t.graph.contains(g))
      throw new EngineError('engine.scope', `tensor ${t.name} belongs to an unrelated graph`);
  }
  if (!g) throw new EngineError('engine.scope', 'an op needs at least one tensor input');
  return g;
}
