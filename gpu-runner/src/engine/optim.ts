// Optimizer as graph ops: learning-rate schedules, global-norm clipping and AdamW, so the update
// runs on the execution provider in the same session run as forward and backward. The step
// counter, moments and parameters are graph inputs whose next values are graph outputs; the
// runtime binds them (output → input) so they stay beside the session between steps.
import { EngineError, type Graph, type Tensor } from './graph';
import {
  add,
  cos,
  div,
  less,
  maximum,
  minimum,
  mul,
  pow,
  reciprocal,
  reduceSum,
  sqrt,
  sub,
  where,
} from './ops';

export type Schedule =
  | { kind: 'constant'; lr: number; warmupSteps?: number }
  | { kind: 'linear'; lr: number; warmupSteps?: number; totalSteps: number; minLr?: number }
  | { kind: 'cosine'; lr: number; warmupSteps?: number; totalSteps: number; minLr?: number };

/** Learning rate of update `step` (the 1-based optimizer step counter, a float scalar), with
 *  the semantics of HF transformers' get_{constant,linear,cosine}_schedule_with_warmup driven by a
 *  LambdaLR stepped once after every optimizer step: update u uses λ(s) with s = u − 1, so
 *  - warmup (s < W):  λ = s / max(1, W)  (the first update of a warmed-up job has lr 0, as in HF)
 *  - linear:          λ = max(0, (T − s) / max(1, T − W))
 *  - cosine:          λ = max(0, ½(1 + cos(π·min(1, (s − W) / max(1, T − W)))))
 *  and with minLr (HF's cosine_with_min_lr, applied to linear too) λ ← λ·(1 − minLr/lr) + minLr/lr
 *  after warmup. Progress is capped at 1 (HF's cosine would rise again past T). */
export function learningRate(step: Tensor, schedule: Schedule): Tensor {
  const s = sub(step, 1);
  const warm = schedule.warmupSteps ?? 0;
  const inWarmup = less(s, warm);
  const warmup = div(s, Math.max(1, warm));
  let decay: Tensor | number = 1;
  if (schedule.kind !== 'constant') {
    if (schedule.totalSteps < warm)
      throw new EngineError(
        'engine.schedule',
        `totalSteps (${schedule.totalSteps}) must be at least warmupSteps (${warm})`,
      );
    const span = Math.max(1, schedule.totalSteps - warm);
    const progress = minimum(maximum(div(sub(s, warm), span), 0), 1);
    const shape =
      schedule.kind === 'linear' ? sub(1, progress) : mul(add(cos(mul(progress, Math.PI)), 1), 0.5);
    const rate = (schedule.minLr ?? 0) / schedule.lr;
    decay = rate > 0 ? add(mul(shape, 1 - rate), rate) : shape;
  }
  const after = typeof decay === 'number' ? add(mul(s, 0), decay) : decay;
  return mul(where(inWarmup, warmup, after), schedule.lr);
}

/** Scales gradients so their global L2 norm is at most maxNorm (torch.nn.utils.clip_grad_norm_). */
export function clipByGlobalNorm(
  grads: readonly Tensor[],
  maxNorm: number,
): { grads: Tensor[]; norm: Tensor } {
  const squares = grads.map((g) => reduceSum(mul(g, g), undefined, false));
  const norm = sqrt(squares.reduce((a, b) => add(a, b)));
  const scale = minimum(div(maxNorm, add(norm, 1e-6)), 1);
  return { grads: grads.map((g) => mul(g, scale)), norm };
}

export interface AdamWConfig {
  lr: number | Schedule;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip gradients to this global norm first (none if absent). */
  maxGradNorm?: number;
}

export interface AdamWGraph {
  /** Graph input: the 1-based step number (float32 scalar); output `optimizer.step.next`. */
  step: Tensor;
  lr: Tensor;
  gradNorm: Tensor | null;
  /** Named outputs to add to the model: next params, moments and step. */
  outputs: Record<string, Tensor>;
  /** output name → input name it replaces on the next step (pass to run's `bind`). */
  bind: Record<string, string>;
  /** Names of the moment inputs, to be initialised to zeros. */
  moments: string[];
}

/** AdamW (PyTorch semantics: decoupled decay p ← p − lr·wd·p, bias-corrected moments). */
export function adamw(
  graph: Graph,
  params: readonly Tensor[],
  grads: readonly Tensor[],
  config: AdamWConfig,
): AdamWGraph {
  if (params.length !== grads.length) throw new EngineError('engine.adamw', 'one gradient per parameter');
  const { beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.01 } = config;
  const dtype = params[0]?.dtype ?? 'float32';
  const step = graph.input('optimizer.step', dtype, []);
  const lr =
    typeof config.lr === 'number' ? mul(add(mul(step, 0), 1), config.lr) : learningRate(step, config.lr);
  let gs = [...grads];
  let gradNorm: Tensor | null = null;
  if (config.maxGradNorm !== undefined) {
    const clipped = clipByGlobalNorm(gs, config.maxGradNorm);
    gs = clipped.grads;
    gradNorm = clipped.norm;
  }
  const correction1 = reciprocal(sub(1, pow(beta1, step)));
  const correction2 = reciprocal(sub(1, pow(beta2, step)));
  const outputs: Record<string, Tensor> = { 'optimizer.step.next': add(step, 1), 'optimizer.lr': lr };
  const bind: Record<string, string> = { 'optimizer.step.next': 'optimizer.step' };
  const moments: string[] = [];
  params.forEach((p, i) => {
    if (p.kind !== 'param')
      throw new EngineError('engine.adamw', `${p.name} is not a param (declare it with graph.param)`);
    const m = graph.input(`${p.name}.m`, p.dtype, p.shape);
    const v = graph.input(`${p.name}.v`, p.dtype, p.shape);
    const g = gs[i];
    const mNext = add(mul(m, beta1), mul(g, 1 - beta1));
    const vNext = add(mul(v, beta2), mul(mul(g, g), 1 - beta2));
    const update = div(mul(mNext, correction1), add(sqrt(mul(vNext, correction2)), eps));
    const decayed = weightDecay > 0 ? sub(p, mul(p, mul(lr, weightDecay))) : p;
    const pNext = sub(decayed, mul(update, lr));
    outputs[`${p.name}.next`] = pNext;
    outputs[`${p.name}.m.next`] = mNext;
    outputs[`${p.name}.v.next`] = vNext;
    bind[`${p.name}.next`] = p.name;
    bind[`${p.name}.m.next`] = `${p.name}.m`;
    bind[`${p.name}.v.next`] = `${p.name}.v`;
    moments.push(`${p.name}.m`, `${p.name}.v`);
  });
  return { step, lr, gradNorm, outputs, bind, moments };
}
