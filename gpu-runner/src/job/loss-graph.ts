// The Critique-GRPO / GRPO objective (critique-grpo.md §2) as engine ops, plugged into the model's
// train graph. Per token (position t scores token t+1):
//   initial tokens     ℓ = −A·r, r = exp(logp − logp_old)  (PPO clip and dual clip when configured)
//   refinement tokens  ℓ = −A·f(p), p = exp(logp), f = the job's shaping expression (never clipped)
//   KL (klCoef β > 0)  ℓ += β·min(e^x − x − 1, clamp), x = logp_ref − logp  (k3, every response token)
//   L = Σ_t w_t·ℓ_t − c_H·Σ_t e_t·H_t
// w_t is the sequence's aggregation weight (algo/aggregationWeights: every mode is linear in the
// token losses) and e_t = 1/(response tokens in the mini-batch); both are fed per step.
import type { ShapingAst } from '@cgrpo/plugins/shaping';
import type { AlgoConfig } from '../algo/config';
import { parseShapingSpec } from '../algo/shaping';
import {
  add,
  cast,
  div,
  exp,
  greater,
  less,
  log,
  maximum,
  minimum,
  mul,
  neg,
  or,
  pow,
  reduceSum,
  sqrt,
  sub,
  type Tensor,
  where,
} from '../engine';
import type { LossHook } from '../model/model';

type Val = Tensor | number;

function lift(v: Val, like: Tensor): Tensor {
  return typeof v === 'number' ? add(mul(like, 0), v) : v;
}

function binary(op: string, a: Val, b: Val, like: Tensor): Val {
  if (typeof a === 'number' && typeof b === 'number') {
    switch (op) {
      case '+':
        return a + b;
      case '-':
        return a - b;
      case '*':
        return a * b;
      case '/':
        return a / b;
      default:
        return a ** b;
    }
  }
  const x = lift(a, like);
  switch (op) {
    case '+':
      return add(x, b);
    case '-':
      return sub(x, b);
    case '*':
      return mul(x, b);
    case '/':
      return div(x, b);
    default:
      return pow(x, lift(b, like));
  }
}

/** Compiles a checked shaping expression into ops over `p`; the engine differentiates it. */
export function compileShaping(ast: ShapingAst, p: Tensor, params: Readonly<Record<string, number>>): Tensor {
  const go = (n: ShapingAst): Val => {
    switch (n.type) {
      case 'number':
        return n.value;
      case 'p':
        return p;
      case 'param':
        return params[n.name];
      case 'neg': {
        const v = go(n.arg);
        return typeof v === 'number' ? -v : neg(v);
      }
      case 'binary':
        return binary(n.op, go(n.left), go(n.right), p);
      case 'call': {
        const args = n.args.map(go);
        switch (n.fn) {
          case 'exp':
            return typeof args[0] === 'number' ? Math.exp(args[0]) : exp(args[0]);
          case 'log':
            return typeof args[0] === 'number' ? Math.log(args[0]) : log(args[0]);
          case 'sqrt':
            return typeof args[0] === 'number' ? Math.sqrt(args[0]) : sqrt(args[0]);
          case 'min':
            return minimum(lift(args[0], p), args[1]);
          case 'max':
            return maximum(lift(args[0], p), args[1]);
          case 'clip':
            return minimum(maximum(lift(args[0], p), args[1]), args[2]);
        }
      }
    }
  };
  return lift(go(ast), p);
}

/** Per-step inputs the hook declares, in the order the trainer must feed them. */
export const LOSS_INPUTS = [
  'adv',
  'weight',
  'is_initial',
  'is_refinement',
  'logp_old',
  'ent_weight',
] as const;

/** Extra input when klCoef > 0: log-probs of the response tokens under the reference model. */
export const KL_INPUT = 'logp_ref';

export function critiqueGrpoLoss(config: AlgoConfig): LossHook {
  const shapingAst = config.algorithm === 'critique-grpo' ? parseShapingSpec(config.shaping) : null;
  return (ctx) => {
    const shape = ['batch', 'seq'];
    const [adv, weight, isInitial, isRefinement, logpOld, entWeight] = LOSS_INPUTS.map((n) =>
      ctx.input(n, 'float32', shape),
    );
    const ratio = exp(sub(ctx.logp, logpOld));
    let initial = neg(mul(adv, ratio));
    let clipFrac: Tensor | null = null;
    const metricWeights: Record<string, Tensor> = {};
    if (config.clipInitial) {
      const lo = 1 - config.clip.epsLow;
      const hi = 1 + config.clip.epsHigh;
      const clipped = neg(mul(adv, minimum(maximum(ratio, lo), hi)));
      initial = maximum(initial, clipped);
      if (config.clip.dualClip !== null) {
        const cap = mul(neg(adv), config.clip.dualClip);
        initial = where(less(adv, 0), minimum(initial, cap), initial);
      }
      const outside = cast(or(less(ratio, lo), greater(ratio, hi)), 'float32');
      const initialMask = mul(isInitial, ctx.mask);
      const initialTokens = reduceSum(initialMask, undefined, false);
      clipFrac = div(reduceSum(mul(outside, initialMask), undefined, false), maximum(initialTokens, 1));
      metricWeights.clip_frac = initialTokens;
    }
    let perToken = mul(isInitial, initial);
    if (shapingAst) {
      const f = compileShaping(shapingAst, exp(ctx.logp), config.shaping.params);
      perToken = add(perToken, mul(isRefinement, neg(mul(adv, f))));
    }
    let klMean: Tensor | null = null;
    if (config.klCoef > 0) {
      const logpRef = ctx.input(KL_INPUT, 'float32', shape);
      const x = sub(logpRef, ctx.logp);
      let kl = sub(sub(exp(x), x), 1);
      if (config.klClamp !== null) kl = minimum(kl, config.klClamp);
      const response = mul(add(isInitial, isRefinement), ctx.mask);
      perToken = add(perToken, mul(response, mul(kl, config.klCoef)));
      const responseTokens = reduceSum(response, undefined, false);
      klMean = div(reduceSum(mul(response, kl), undefined, false), maximum(responseTokens, 1));
      metricWeights.kl_mean = responseTokens;
    }
    const policy = reduceSum(mul(weight, perToken), undefined, false);
    const entropyMean = reduceSum(mul(entWeight, ctx.entropy), undefined, false);
    const loss = config.entropyCoef > 0 ? sub(policy, mul(entropyMean, config.entropyCoef)) : policy;
    const metrics: Record<string, Tensor> = { policy_loss: policy, entropy_mean: entropyMean };
    if (clipFrac) metrics.clip_frac = clipFrac;
    if (klMean) metrics.kl_mean = klMean;
    // policy_loss and entropy_mean are sums with the whole mini-batch's weights (additive over
    // micro-batches); clip_frac and kl_mean are token means, combined by their token counts
    return { loss, metrics, metricWeights };
  };
}
