// Structural checks equivalent to onnx.checker's (full_check=False) for what the engine emits:
// decodes the bytes and verifies IR/opset, SSA names, topological order with outer-scope
// capture in subgraphs, declared graph inputs/outputs, initializer byte sizes and Loop
// signatures. Returns the problems found (empty = valid).
import { BYTES_PER_ELEMENT, DTYPE_FROM_ONNX } from './dtype';
import { ModelProto } from './onnx-schema';

interface TypeJson {
  tensorType?: { elemType?: number; shape?: { dim?: { dimValue?: number; dimParam?: string }[] } };
}
interface ValueInfoJson {
  name?: string;
  type?: TypeJson;
}
interface TensorJson {
  name?: string;
  dims?: number[];
  dataType?: number;
  rawData?: Uint8Array;
}
interface AttrJson {
  name?: string;
  type?: number;
  g?: GraphJson;
  t?: TensorJson;
}
interface NodeJson {
  input?: string[];
  output?: string[];
  opType?: string;
  attribute?: AttrJson[];
}
interface GraphJson {
  name?: string;
  node?: NodeJson[];
  input?: ValueInfoJson[];
  output?: ValueInfoJson[];
  initializer?: TensorJson[];
}

function checkTensor(t: TensorJson, where: string, problems: string[]): void {
  const dtype = DTYPE_FROM_ONNX[t.dataType ?? 0];
  if (!dtype) {
    problems.push(`${where}: unsupported data type ${t.dataType}`);
    return;
  }
  const size = (t.dims ?? []).reduce((a, b) => a * Number(b), 1);
  const bytes = t.rawData?.length ?? 0;
  if (bytes !== size * BYTES_PER_ELEMENT[dtype])
    problems.push(`${where}: ${bytes} bytes for ${size} ${dtype} values`);
}

function checkValueInfo(v: ValueInfoJson, where: string, problems: string[]): void {
  if (!v.name) problems.push(`${where}: missing name`);
  const elem = v.type?.tensorType?.elemType;
  if (!elem || !DTYPE_FROM_ONNX[elem]) problems.push(`${where} ${v.name}: missing or unknown elem_type`);
}

function checkGraph(g: GraphJson, outer: ReadonlySet<string>, path: string, problems: string[]): void {
  const defined = new Set<string>(outer);
  const own = new Set<string>();
  const define = (name: string, where: string) => {
    if (own.has(name)) problems.push(`${where}: ${name} is defined twice (SSA)`);
    own.add(name);
    defined.add(name);
  };
  for (const v of g.input ?? []) {
    checkValueInfo(v, `${path}.input`, problems);
    if (v.name) define(v.name, `${path}.input`);
  }
  for (const t of g.initializer ?? []) {
    checkTensor(t, `${path}.initializer ${t.name}`, problems);
    if (t.name && !own.has(t.name)) define(t.name, `${path}.initializer`);
  }
  (g.node ?? []).forEach((n, i) => {
    const where = `${path}.node[${i}] ${n.opType}`;
    if (!n.opType) problems.push(`${where}: missing op_type`);
    for (const name of n.input ?? [])
      if (name !== '' && !defined.has(name))
        problems.push(`${where}: input ${name} is not defined before use`);
    for (const a of n.attribute ?? []) {
      if (!a.name) problems.push(`${where}: attribute without name`);
      if (a.type === 5) {
        if (!a.g) problems.push(`${where}: graph attribute ${a.name} is empty`);
        else checkGraph(a.g, defined, `${where}.${a.name}`, problems);
      }
      if (a.type === 4 && a.t) checkTensor(a.t, `${where}.${a.name}`, problems);
    }
    if (n.opType === 'Loop') {
      const body = n.attribute?.find((a) => a.name === 'body')?.g;
      const carried = (n.input?.length ?? 0) - 2;
      if (!body) problems.push(`${where}: Loop without body`);
      else {
        if ((body.input?.length ?? 0) !== 2 + carried)
          problems.push(`${where}: body has ${body.input?.length} inputs, expected ${2 + carried}`);
        const scans = (body.output?.length ?? 0) - 1 - carried;
        if (scans < 0 || (n.output?.length ?? 0) !== carried + scans)
          problems.push(`${where}: body outputs do not match the Loop's`);
      }
    }
    for (const name of n.output ?? []) if (name !== '') define(name, where);
  });
  for (const v of g.output ?? []) {
    checkValueInfo(v, `${path}.output`, problems);
    if (v.name && !defined.has(v.name)) problems.push(`${path}.output ${v.name} is never produced`);
  }
}

export function validateModel(bytes: Uint8Array): string[] {
  const problems: string[] = [];
  const model = ModelProto.toObject(ModelProto.decode(bytes), { longs: Number, bytes: Uint8Array }) as {
    irVersion?: number;
    opsetImport?: { domain?: string; version?: number }[];
    graph?: GraphJson;
  };
  if (!model.irVersion) problems.push('model: ir_version is not set');
  if (!(model.opsetImport ?? []).some((o) => (o.domain ?? '') === '' && (o.version ?? 0) > 0))
    problems.push('model: no opset_import for the default domain');
  if (!model.graph) problems.push('model: no graph');
  else checkGraph(model.graph, new Set(), 'graph', problems);
  return problems;
}
