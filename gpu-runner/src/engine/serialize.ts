// Graph → ONNX ModelProto bytes. Only nodes that feed the requested outputs are written (so
// gradient rules may build terms nobody asks for); every declared input stays, so callers can
// feed the same names whatever the outputs.
import { createHash } from 'node:crypto';
import { type DType, ONNX_DTYPE } from './dtype';
import { type Attr, EngineError, type Graph, type Node, type Shape, type Tensor } from './graph';
import { ModelProto } from './onnx-schema';

export const OPSET = 23;
export const IR_VERSION = 11;

export interface ValueSpec {
  name: string;
  dtype: DType;
  shape: Shape;
  kind: 'input' | 'param' | 'output';
}

export interface BuiltModel {
  bytes: Uint8Array;
  /** sha256 of the bytes: the session cache key. */
  hash: string;
  inputs: ValueSpec[];
  outputs: ValueSpec[];
}

type Json = Record<string, unknown>;

function valueInfo(name: string, dtype: DType, shape: Shape): Json {
  return {
    name,
    type: {
      tensorType: {
        elemType: ONNX_DTYPE[dtype],
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function tensorProto(name: string, dtype: DType, dims: readonly number[], data: ArrayBufferView): Json {
  return {
    name,
    dataType: ONNX_DTYPE[dtype],
    dims: [...dims],
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  };
}

function attrProto(name: string, a: Attr, emitGraph: (g: Graph) => Json): Json {
  switch (a.kind) {
    case 'int':
      return { name, type: 2, i: a.value };
    case 'float':
      return { name, type: 1, f: a.value };
    case 'ints':
      return { name, type: 7, ints: [...a.value] };
    case 'floats':
      return { name, type: 6, floats: [...a.value] };
    case 'string':
      return { name, type: 3, s: new TextEncoder().encode(a.value) };
    case 'tensor':
      return { name, type: 4, t: tensorProto('', a.value.dtype, a.value.dims, a.value.data) };
    case 'graph':
      return { name, type: 5, g: emitGraph(a.value) };
  }
}

/** Nodes (in any graph) that the given tensors depend on, Loop bodies included. */
function neededNodes(roots: readonly Tensor[]): Set<Node> {
  const needed = new Set<Node>();
  const stack = [...roots];
  while (stack.length > 0) {
    const t = stack.pop()!;
    const p = t.producer;
    if (!p || needed.has(p)) continue;
    needed.add(p);
    for (const i of p.inputs) if (i) stack.push(i);
    for (const a of Object.values(p.attrs)) if (a.kind === 'graph') stack.push(...a.value.outputs);
  }
  return needed;
}

/** Serializes `graph` with the named outputs. Output names that differ from the tensor's own
 *  name get an Identity node. */
export function buildModel(graph: Graph, outputs: Record<string, Tensor>, docString = ''): BuiltModel {
  if (graph.parent) throw new EngineError('engine.build', 'build the root graph, not a subgraph');
  const outs = Object.entries(outputs);
  if (outs.length === 0) throw new EngineError('engine.build', 'a model needs at least one output');
  const declared = new Set(graph.inputs.map((t) => t.name));
  for (const [name, t] of outs) {
    if (t.graph !== graph) throw new EngineError('engine.build', `output ${name} is a tensor of a subgraph`);
    if (declared.has(name) && t.name !== name)
      throw new EngineError('engine.build', `output name ${name} collides with an input name`);
  }
  const needed = neededNodes(outs.map(([, t]) => t));
  const usedInitializers = new Set<string>();
  for (const n of needed)
    for (const i of n.inputs) if (i?.kind === 'initializer') usedInitializers.add(i.name);
  for (const [, t] of outs) if (t.kind === 'initializer') usedInitializers.add(t.name);

  const emitNodes = (g: Graph): Json[] =>
    g.nodes
      .filter((n) => needed.has(n))
      .map((n) => ({
        input: n.inputs.map((i) => i?.name ?? ''),
        output: n.outputs.map((o) => o.name),
        name: `n${n.id}_${n.op}`,
        opType: n.op,
        domain: n.domain,
        attribute: Object.entries(n.attrs).map(([k, a]) => attrProto(k, a, emitSubgraph)),
      }));
  const emitSubgraph = (g: Graph): Json => ({
    name: g.name,
    node: emitNodes(g),
    input: g.inputs.map((t) => valueInfo(t.name, t.dtype, t.shape)),
    output: g.outputs.map((t) => valueInfo(t.name, t.dtype, t.shape)),
  });

  const nodes = emitNodes(graph);
  const outputInfos: Json[] = [];
  let k = 0;
  for (const [name, t] of outs) {
    if (t.name !== name) {
      nodes.push({
        input: [t.name],
        output: [name],
        name: `out${k++}_Identity`,
        opType: 'Identity',
        domain: '',
        attribute: [],
      });
    }
    outputInfos.push(valueInfo(name, t.dtype, t.shape));
  }
  const graphJson: Json = {
    name: graph.name,
    node: nodes,
    input: graph.inputs.map((t) => valueInfo(t.name, t.dtype, t.shape)),
    output: outputInfos,
    initializer: graph.initializers
      .filter((i) => usedInitializers.has(i.tensor.name))
      .map((i) => tensorProto(i.tensor.name, i.tensor.dtype, i.tensor.shape as number[], i.data)),
  };
  const model = ModelProto.fromObject({
    irVersion: IR_VERSION,
    opsetImport: [
      { domain: '', version: OPSET },
      { domain: 'com.microsoft', version: 1 },
    ],
    producerName: 'cgrpo-engine',
    producerVersion: '0.1.0',
    docString,
    graph: graphJson,
  });
  const bytes = ModelProto.encode(model).finish();
  return {
    bytes,
    hash: createHash('sha256').update(bytes).digest('hex'),
    inputs: graph.inputs.map((t) => ({
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      kind: t.kind === 'param' ? 'param' : 'input',
    })),
    outputs: outs.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, kind: 'output' })),
  };
}
