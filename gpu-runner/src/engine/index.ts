// cgrpo training engine: typed graph builder → reverse-mode autodiff → ONNX → onnxruntime-node.
// See docs/engine.md.

export { type LoopBodyResult, type LoopOptions, loop } from './control';
export { type CudaProbe, type Device, type DeviceRequest, probeCuda } from './device';
export { type DType, isFloat, type TypedArray, toTypedArray } from './dtype';
export {
  CompiledModel,
  createEngine,
  type DeviceSelection,
  Engine,
  type EngineOptions,
  type Feed,
  type RunResult,
  selectDevice,
  type TensorValue,
} from './engine';
export { grad, unbroadcast, VJP } from './grad';
export {
  type Attr,
  attr,
  type Dim,
  EngineError,
  Graph,
  type Node,
  type OutputSpec,
  type Shape,
  Tensor,
} from './graph';
export * as nn from './nn';
export {
  causalAttention,
  crossEntropy,
  entropy,
  gelu,
  linear,
  mseLoss,
  paddingBias,
  rmsNorm,
  rope,
  ropeTables,
  type SampleOptions,
  sampleTokens,
  silu,
  softmaxComposite,
  tokenLogProbs,
} from './nn';
export * from './ops';
export {
  type AdamWConfig,
  type AdamWGraph,
  adamw,
  clipByGlobalNorm,
  learningRate,
  type Schedule,
} from './optim';
export { type BuiltModel, buildModel, IR_VERSION, OPSET, type ValueSpec } from './serialize';
export type { RunOptions } from './session-host.mjs';
export {
  type AccumulatingTrainStep,
  buildAccumulatingTrainStep,
  buildTrainStep,
  gradName,
  Trainer,
  type TrainStepModel,
  type TrainStepSpec,
} from './train';
export { validateModel } from './validate';
