// The training graph's loss (engine ops, run by onnxruntime) against the plain-TypeScript
// reference objective of algo/loss.ts, on the tiny model's real log-probs: initial tokens with
// PPO clipping, refinement tokens with the shaping expression, the entropy bonus, and the k3 KL
// term to a reference policy (with its clamp). π_old and π_ref log-probs are the model's own plus
// seeded noise, so every term is away from its trivial value.
import { join } from 'node:path';
import { parseJobSpec } from '@cgrpo/contract';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromHyperparameters } from '../src/algo/config';
import { computeLoss } from '../src/algo/loss';
import { createRng } from '../src/algo/rng';
import { shapingFunction } from '../src/algo/shaping';
import { createEngine, type Engine } from '../src/engine';
import { critiqueGrpoLoss } from '../src/job/loss-graph';
import { lossFeeds, type TrainSequence } from '../src/job/train';
import { CausalLM } from '../src/model/model';
import { ROOT } from './harness';

let engine: Engine;
let model: CausalLM;

beforeAll(async () => {
  engine = await createEngine({ device: 'cpu' });
  model = await CausalLM.load(join(ROOT, 'gpu-runner', 'models', 'tiny-llama'), {
    engine,
    lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'], seed: 3 },
  });
}, 60_000);

afterAll(async () => {
  await model?.close();
  await engine?.close();
});

function hyperparameters(hp: Record<string, unknown>) {
  const r = parseJobSpec({
    model: { id: 'tiny-llama' },
    datasets: { train: { uri: 'file:x.jsonl' } },
    hyperparameters: hp,
  });
  if (!r.ok) throw new Error(JSON.stringify(r.fields));
  return r.spec.hyperparameters;
}

describe('the loss graph equals the reference objective', () => {
  for (const [name, hp] of [
    ['critique-grpo defaults', { max_response_tokens: 8 }],
    [
      'with clipping, entropy bonus and KL (clamped)',
      { clip_initial: true, entropy_coef: 0.01, kl_coef: 0.05, kl_clamp: 0.5, max_response_tokens: 8 },
    ],
    ['KL unclamped, token-mean aggregation', { kl_coef: 0.2, loss_aggregation: 'token_mean' }],
  ] as const) {
    it(name, async () => {
      const h = hyperparameters(hp);
      const algo = fromHyperparameters(h, 'critique-grpo', {
        expression: 'p / (p + gamma)',
        params: { gamma: 0.1 },
      });
      const tok = model.tokenizer;
      const prompt = (q: string) => tok.encode(`${q} =`);
      const seqs: TrainSequence[] = [
        { kind: 'initial', question: 0, sample: 0, advantage: 0.5, tokens: [], start: 0 },
        { kind: 'initial', question: 0, sample: 1, advantage: -0.25, tokens: [], start: 0 },
        { kind: 'refinement', question: 0, sample: 0, advantage: 0.8, tokens: [], start: 0 },
        { kind: 'initial', question: 1, sample: 0, advantage: -0.3, tokens: [], start: 0 },
      ];
      const texts = [' 7', ' 8 because', ' 7 after all', ' 12'];
      seqs.forEach((s, i) => {
        const p = prompt(i < 3 ? '3 + 4' : '5 + 7');
        s.tokens = [...p, ...tok.encode(texts[i])];
        s.start = p.length;
      });
      const scored = await model.score(seqs, { temperature: h.temperature });
      const rng = createRng(11, 'loss-graph-test');
      seqs.forEach((s, i) => {
        const logp = scored[i].logp;
        if (s.kind === 'initial') s.logpOld = logp.map((v) => v + (rng.next() - 0.5) * 0.6);
        s.logpRef = logp.map((v) => v + (rng.next() - 0.5) * 3);
      });

      const expected = computeLoss(
        seqs.map((s, i) => ({
          kind: s.kind,
          question: s.question,
          advantage: s.advantage,
          logp: Array.from(scored[i].logp),
          ...(s.logpOld ? { logpOld: Array.from(s.logpOld) } : {}),
          ...(algo.klCoef > 0 && s.logpRef ? { logpRef: Array.from(s.logpRef) } : {}),
          entropy: Array.from(scored[i].entropy),
        })),
        algo,
        shapingFunction(algo.shaping),
      );
      if (algo.klCoef > 0) expect(expected.meanKl).toBeGreaterThan(0.01);

      const trainer = await model.trainer({
        mode: 'lora',
        loss: critiqueGrpoLoss(algo),
        temperature: h.temperature,
        optimizer: { lr: 0, weightDecay: 0 },
      });
      const r = await trainer.step(seqs, lossFeeds(seqs, algo));
      expect(r.loss).toBeCloseTo(expected.loss, 4);
      expect(Math.abs(r.loss - expected.loss)).toBeLessThan(1e-4 * Math.max(1, Math.abs(expected.loss)));
      if (algo.klCoef > 0) expect(r.metrics.kl_mean[0]).toBeCloseTo(expected.meanKl, 4);
      else expect(r.metrics.kl_mean).toBeUndefined();
    }, 60_000);
  }
});
