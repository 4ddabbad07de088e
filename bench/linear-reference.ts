// The Linear-layer reference of bench:decode and bench:model: the model's Linear layers alone
// (q,k,v,o,gate,up,down of every layer + the head) on `rows` input rows, as float32 MatMuls on
// float32 weights of the model's shapes held in their own runtime state. It works whatever
// precision the model holds its weights in, and is a reference, not a bound (no Cast, attention,
// norm or sampling in it).
import * as op from '../gpu-runner/src/engine/index';
import { buildModel, Graph, type Tensor } from '../gpu-runner/src/engine/index';
import { LORA_TARGETS, projShape } from '../gpu-runner/src/model/decoder';
import type { CausalLM } from '../gpu-runner/src/model/index';

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Seconds for the model's Linear layers alone on `rows` input rows: float32 MatMuls on float32
 *  weights of the model's shapes (held in their own runtime state, compiled once), so neither the
 *  fp16 → f32 Cast of half-precision weights nor attention, norms or sampling is in it. */
const references = new Map<string, Promise<{ run: (rows: number) => Promise<number> }>>();
function bareMatmul(model: CausalLM): Promise<{ run: (rows: number) => Promise<number> }> {
  const key = model.stateKey;
  let p = references.get(key);
  if (!p) {
    p = (async () => {
      const cfg = model.config;
      const g = new Graph('bare_matmul');
      const width = { h: cfg.hiddenSize, q: cfg.numHeads * cfg.headDim, i: cfg.intermediateSize };
      const xs = {
        h: g.input('x_h', 'float32', ['rows', width.h]),
        q: g.input('x_q', 'float32', ['rows', width.q]),
        i: g.input('x_i', 'float32', ['rows', width.i]),
      };
      const pick = (n: number) => (n === width.h ? xs.h : n === width.q ? xs.q : xs.i);
      const weights: Record<string, { dims: number[]; data: Float32Array }> = {};
      const w = (name: string, dims: number[]) => {
        weights[name] = { dims, data: new Float32Array(dims[0] * dims[1]).fill(0.01) };
        return g.input(name, 'float32', dims);
      };
      let total: Tensor | null = null;
      const acc = (t: Tensor) => {
        const s = op.reduceSum(t, undefined, false);
        total = total ? op.add(total, s) : s;
      };
      for (let l = 0; l < cfg.numLayers; l++) {
        for (const m of LORA_TARGETS) {
          const [i, o] = projShape(cfg, m);
          acc(op.matmul(pick(i), w(`w_${l}_${m}`, [i, o])));
        }
      }
      acc(op.matmul(xs.h, w('w_head', [cfg.hiddenSize, cfg.vocabSize])));
      const compiled = await model.engine.load(buildModel(g, { total: total! }));
      await compiled.setState('bench-bare-matmul', weights, { transfer: true });
      return {
        run: async (rows: number) => {
          const feed = (n: number) => ({ dims: [rows, n], data: new Float32Array(rows * n).fill(0.01) });
          const feeds = { x_h: feed(width.h), x_q: feed(width.q), x_i: feed(width.i) };
          return (await compiled.run(feeds, { stateKey: 'bench-bare-matmul' })).ms / 1000;
        },
      };
    })();
    references.set(key, p);
  }
  return p;
}

export async function bareMatmulSeconds(model: CausalLM, rows: number, repeats: number): Promise<number> {
  const ref = await bareMatmul(model);
  await ref.run(rows);
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) times.push(await ref.run(rows));
  return median(times);
}
