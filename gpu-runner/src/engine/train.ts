// One training step as one model: forward, loss, gradients and the AdamW update in a single
// session run. Parameters, moments and the step counter live in the runtime-side state (on the
// worker) between steps; only the batch goes in and the loss (plus any extra outputs) comes out.
import { allocate, type DType } from './dtype';
import type { CompiledModel, Engine, Feed, RunResult, TensorValue } from './engine';
import { grad } from './grad';
import { EngineError, Graph, type Tensor } from './graph';
import { add, zerosLike } from './ops';
import { type AdamWConfig, adamw } from './optim';
import { type BuiltModel, buildModel } from './serialize';

export interface TrainStepSpec {
  graph: Graph;
  loss: Tensor;
  params: readonly Tensor[];
  optimizer: AdamWConfig;
  /** More outputs to fetch each step (metrics such as entropy, KL). */
  outputs?: Record<string, Tensor>;
}

export interface TrainStepModel {
  model: BuiltModel;
  bind: Record<string, string>;
  moments: string[];
  params: { name: string; dtype: DType }[];
  /** Outputs fetched each step: loss, lr, grad norm (when clipping) and the extras. */
  fetch: string[];
}

export function buildTrainStep(spec: TrainStepSpec): TrainStepModel {
  const grads = grad(spec.loss, spec.params);
  const opt = adamw(spec.graph, spec.params, grads, spec.optimizer);
  const outputs: Record<string, Tensor> = { loss: spec.loss, ...(spec.outputs ?? {}), ...opt.outputs };
  if (opt.gradNorm) outputs['optimizer.grad_norm'] = opt.gradNorm;
  const fetch = [
    'loss',
    'optimizer.lr',
    ...Object.keys(spec.outputs ?? {}),
    ...(opt.gradNorm ? ['optimizer.grad_norm'] : []),
  ];
  return {
    model: buildModel(spec.graph, outputs),
    bind: opt.bind,
    moments: opt.moments,
    params: spec.params.map((p) => ({ name: p.name, dtype: p.dtype })),
    fetch,
  };
}

/** Name of the state buffer that accumulates a parameter's gradient across micro-batches. */
export const gradName = (param: string): string => `${param}.grad`;

/** Gradient accumulation (micro-batches inside one optimizer step) as two models over the same
 *  runtime state: `accumulate` runs forward and backward and ADDS each gradient into its
 *  `<param>.grad` buffer (a sum, never a mean: the loss's own weights already normalise over the
 *  whole mini-batch); `apply` runs clipping and AdamW on the buffers, exactly as the fused step
 *  does on one packed batch, and zeroes them. k accumulate runs + one apply = one fused step on
 *  the concatenated batch. */
export interface AccumulatingTrainStep {
  accumulate: { model: BuiltModel; bind: Record<string, string>; fetch: string[] };
  apply: { model: BuiltModel; bind: Record<string, string>; fetch: string[] };
  /** The gradient buffers to initialise to zeros (same dims as their params). */
  buffers: { name: string; param: string; dtype: DType }[];
  moments: string[];
}

export function buildAccumulatingTrainStep(spec: TrainStepSpec): AccumulatingTrainStep {
  const grads = grad(spec.loss, spec.params);
  const outputs: Record<string, Tensor> = { loss: spec.loss, ...(spec.outputs ?? {}) };
  const bind: Record<string, string> = {};
  spec.params.forEach((p, i) => {
    const buffer = spec.graph.input(gradName(p.name), p.dtype, p.shape);
    outputs[`${gradName(p.name)}.next`] = add(buffer, grads[i]);
    bind[`${gradName(p.name)}.next`] = gradName(p.name);
  });
  const accumulate = {
    model: buildModel(spec.graph, outputs),
    bind,
    fetch: ['loss', ...Object.keys(spec.outputs ?? {})],
  };

  const g = new Graph();
  const params = spec.params.map((p) => g.param(p.name, p.dtype, p.shape));
  const buffers = spec.params.map((p) => g.input(gradName(p.name), p.dtype, p.shape));
  const opt = adamw(g, params, buffers, spec.optimizer);
  const applyOutputs: Record<string, Tensor> = { ...opt.outputs };
  const applyBind = { ...opt.bind };
  for (const b of buffers) {
    applyOutputs[`${b.name}.next`] = zerosLike(b);
    applyBind[`${b.name}.next`] = b.name;
  }
  if (opt.gradNorm) applyOutputs['optimizer.grad_norm'] = opt.gradNorm;
  return {
    accumulate,
    apply: {
      model: buildModel(g, applyOutputs),
      bind: applyBind,
      fetch: ['optimizer.lr', ...(opt.gradNorm ? ['optimizer.grad_norm'] : [])],
    },
    buffers: spec.params.map((p) => ({ name: gradName(p.name), param: p.name, dtype: p.dtype })),
    moments: opt.moments,
  };
}

let trainerCount = 0;

/** Drives a TrainStepModel on an engine: init(params) once, then step(batch) per update. */
export class Trainer {
  private constructor(
    readonly compiled: CompiledModel,
    readonly spec: TrainStepModel,
    readonly stateKey: string,
  ) {}

  static async create(engine: Engine, spec: TrainStepModel): Promise<Trainer> {
    trainerCount += 1;
    return new Trainer(await engine.load(spec.model), spec, `trainer-${trainerCount}`);
  }

  /** Sets parameter values, zeroes the moments, resets the step counter to 1. */
  async init(params: Record<string, TensorValue>, step = 1): Promise<void> {
    const values: Record<string, Feed> = { 'optimizer.step': step };
    for (const p of this.spec.params) {
      const value = params[p.name];
      if (!value) throw new EngineError('engine.trainer', `init: missing a value for param ${p.name}`);
      const size = value.dims.reduce((a, b) => a * b, 1);
      values[p.name] = value;
      values[`${p.name}.m`] = { dims: value.dims, data: allocate(p.dtype, size) };
      values[`${p.name}.v`] = { dims: value.dims, data: allocate(p.dtype, size) };
    }
    await this.compiled.setState(this.stateKey, values);
  }

  /** One optimizer step (or `repeat` steps on the same batch, never leaving the runtime). */
  async step(batch: Record<string, Feed>, repeat = 1): Promise<RunResult> {
    return this.compiled.run(batch, {
      stateKey: this.stateKey,
      bind: this.spec.bind,
      fetch: this.spec.fetch,
      repeat,
    });
  }

  /** Current parameter values (copied out of the runtime). */
  async params(): Promise<Record<string, TensorValue>> {
    return this.compiled.getState(
      this.stateKey,
      this.spec.params.map((p) => p.name),
    );
  }

  /** Parameters, moments and step counter: everything needed to resume. */
  async state(): Promise<Record<string, TensorValue>> {
    return this.compiled.getState(this.stateKey);
  }
}
