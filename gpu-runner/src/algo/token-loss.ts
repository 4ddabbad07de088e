// Per-token loss terms and their derivatives with respect to the token's log-prob (§2.2–2.4, §3).
// These are the reference numbers the engine's autodiff must reproduce.
import type { ClipConfig } from './config';

export interface TokenLoss {
  loss: number;
  dLossDLogp: number;
}

/**
 * On-policy (initial-response) token: r = exp(logp − logpOld), ℓ = −A·r, or with a clip config
 * ℓ = max(−A·r, −A·clip(r, 1−εlow, 1+εhigh)) (PPO; εhigh > εlow is DAPO's clip-higher), and with
 * dual clip c for A < 0 the result is further capped at −A·c. A clipped branch carries no gradient.
 */
export function initialTokenLoss(
  A: number,
  logp: number,
  logpOld: number,
  clip?: ClipConfig | null,
): TokenLoss {
  const r = Math.exp(logp - logpOld);
  const unclipped = -A * r;
  if (!clip) return { loss: unclipped, dLossDLogp: unclipped };
  const clippedRatio = Math.min(Math.max(r, 1 - clip.epsLow), 1 + clip.epsHigh);
  const clipped = -A * clippedRatio;
  let result: TokenLoss =
    unclipped >= clipped ? { loss: unclipped, dLossDLogp: unclipped } : { loss: clipped, dLossDLogp: 0 };
  if (clip.dualClip !== null && A < 0) {
    const cap = -A * clip.dualClip;
    if (result.loss > cap) result = { loss: cap, dLossDLogp: 0 };
  }
  return result;
}

/** f(p) and Ψ(p) = ∂f/∂logp of a shaping function. */
export type ShapingFunction = (p: number) => { f: number; dfDLogp: number };

/** The paper's f(p) = p / (p + γ), Ψ(p) = γ·p / (p + γ)², in closed form. */
export function ratioShaping(gamma: number): ShapingFunction {
  return (p) => ({ f: p / (p + gamma), dfDLogp: (gamma * p) / ((p + gamma) * (p + gamma)) });
}

/** Off-policy (refinement) token: ℓ = −A·f(p), no old policy, no ratio, never clipped. */
export function refinementTokenLoss(A: number, logp: number, shaping: ShapingFunction): TokenLoss {
  const { f, dfDLogp } = shaping(Math.exp(logp));
  return { loss: -A * f, dLossDLogp: -A * dfDLogp };
}

/**
 * k3 KL estimator to the reference policy: x = logpRef − logp, KL = eˣ − x − 1 ≥ 0,
 * ∂KL/∂logp = 1 − eˣ. With `clamp` the estimate is capped at `clamp` (verl clamps to [−10, 10];
 * k3 is never negative) and a capped token carries no gradient.
 */
export function k3Kl(
  logp: number,
  logpRef: number,
  clamp: number | null = null,
): { kl: number; dKlDLogp: number } {
  const x = logpRef - logp;
  const ex = Math.exp(x);
  const kl = ex - x - 1;
  if (clamp !== null && kl > clamp) return { kl: clamp, dKlDLogp: 0 };
  return { kl, dKlDLogp: 1 - ex };
}

/** Entropy of the next-token distribution given its logits (natural log), computed stably. */
export function tokenEntropy(logits: ArrayLike<number>): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let z = 0;
  let weighted = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = Math.exp(logits[i] - max);
    z += e;
    weighted += e * (logits[i] - max);
  }
  // H = log Z − E[l − max]
  return Math.log(z) - weighted / z;
}

/** L_H = −c_H · mean of the token entropies over every response token of both kinds. */
export function entropyTerm(entropies: readonly (readonly number[])[], coef: number): number {
  let sum = 0;
  let count = 0;
  for (const seq of entropies) {
    for (const h of seq) {
      sum += h;
      count++;
    }
  }
  return count === 0 ? 0 : (-coef * sum) / count;
}
