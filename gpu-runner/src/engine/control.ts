// ONNX control flow: Loop with loop-carried state and scan outputs. The body is a subgraph that
// may read any tensor of the graphs around it (ONNX outer-scope capture). Not differentiable:
// Loops are for generation (KV cache as carried state) and several optimizer steps per run.
import { type Dim, EngineError, Graph, innermost, type Shape, type Tensor } from './graph';
import { customOp, identity } from './ops';

export interface LoopBodyResult {
  /** Continue condition (bool scalar); omitted = run all `maxTrip` iterations. */
  cond?: Tensor;
  carried: Tensor[];
  /** Per-iteration values stacked along a new leading axis. */
  scans?: Tensor[];
}

export interface LoopOptions {
  /** Iteration count limit (int64 scalar tensor or a number). */
  maxTrip?: Tensor | number;
  /** Initial condition (bool scalar). */
  cond?: Tensor;
  carried: Tensor[];
  /** Shapes of the carried values inside the body when they change across iterations
   *  (a KV cache growing along 'past'); defaults to the initial shapes. */
  carriedShapes?: Shape[];
  body: (iteration: Tensor, carried: Tensor[], body: Graph) => LoopBodyResult;
}

export function loop(options: LoopOptions, graph?: Graph): { carried: Tensor[]; scans: Tensor[] } {
  const outer = innermost(
    [
      ...options.carried,
      options.maxTrip instanceof Object ? (options.maxTrip as Tensor) : null,
      options.cond ?? null,
    ],
    graph,
  );
  const root = outer.rootGraph;
  const body = new Graph(root.freshName('loop_body'), outer);
  const iter = body.subgraphInput(root.freshName('iter'), 'int64', []);
  const condIn = body.subgraphInput(root.freshName('cond_in'), 'bool', []);
  const carriedIn = options.carried.map((t, i) =>
    body.subgraphInput(root.freshName('carried'), t.dtype, options.carriedShapes?.[i] ?? t.shape),
  );
  const result = options.body(iter, carriedIn, body);
  if (result.carried.length !== options.carried.length)
    throw new EngineError(
      'engine.loop',
      `body returned ${result.carried.length} carried values, expected ${options.carried.length}`,
    );
  // Every body output must be produced inside the body: wrap with Identity.
  const own = (t: Tensor): Tensor =>
    customOp('Identity', [t], [{ dtype: t.dtype, shape: t.shape }], { graph: body })[0];
  body.outputs = [
    own(result.cond ?? identity(condIn)),
    ...result.carried.map(own),
    ...(result.scans ?? []).map(own),
  ];

  const maxTrip =
    options.maxTrip === undefined
      ? null
      : typeof options.maxTrip === 'number'
        ? root.scalar(options.maxTrip, 'int64')
        : options.maxTrip;
  const trip: Dim = typeof options.maxTrip === 'number' ? options.maxTrip : root.freshName('trip');
  const outs = customOp(
    'Loop',
    [maxTrip, options.cond ?? null, ...options.carried],
    [
      ...result.carried.map((t, i) => ({ dtype: t.dtype, shape: options.carriedShapes?.[i] ?? t.shape })),
      ...(result.scans ?? []).map((t) => ({ dtype: t.dtype, shape: [trip, ...t.shape] })),
    ],
    { attrs: { body: { kind: 'graph', value: body } }, graph: outer },
  );
  return { carried: outs.slice(0, options.carried.length), scans: outs.slice(options.carried.length) };
}
