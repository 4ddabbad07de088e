// The backward pass re-casts frozen fp16 weights (grad.ts `transposedWeight`): the input gradient
// of x @ Cast(W16) reads a fresh Cast of the fp16 input, not the forward's float32 copy, so
// onnxruntime can free each copy after its forward MatMul. Checked on the exported train graph of
// the real decoder and on the graph onnxruntime actually runs (after CSE and fusions), and on
// real onnxruntime-node: the gradients are those of the same weights fed as float32.
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDecoderConfig } from '../model/config';
import { LORA_TARGETS } from '../model/decoder';
import { scoreTensors } from '../model/graphs';
import { CausalLM, type LossHook, type ScoredSequence } from '../model/model';
import { floatToHalf, halfToFloat, openCheckpointTensors, writeSafetensors } from '../model/safetensors';
import { createEngine, type Engine } from './engine';
import { grad } from './grad';
import { Graph } from './graph';
import { ModelProto } from './onnx-schema';
import * as op from './ops';
import { buildModel } from './serialize';
import { buildTrainStep } from './train';

const MODELS = join(import.meta.dirname, '..', '..', 'models');
const FLOAT16 = 10;

let engine: Engine;
beforeAll(async () => {
  engine = await createEngine({ threads: 1 });
});
afterAll(async () => {
  await engine.close();
});

interface NodeProto {
  opType: string;
  input: string[];
  output: string[];
  name: string;
}
function decode(bytes: Uint8Array) {
  const m = ModelProto.toObject(ModelProto.decode(bytes)) as {
    graph: { node: NodeProto[]; input: { name: string; type?: { tensorType?: { elemType?: number } } }[] };
  };
  const nodes = m.graph.node;
  const half = new Set(
    m.graph.input.filter((i) => i.type?.tensorType?.elemType === FLOAT16).map((i) => i.name),
  );
  const producer = new Map<string, NodeProto>();
  const consumers = new Map<string, NodeProto[]>();
  for (const n of nodes) {
    for (const o of n.output) producer.set(o, n);
    for (const i of n.input) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  }
  return { nodes, half, producer, consumers };
}

/** the decoder's LoRA train graph with every frozen weight a float16 input (the 'half' role) */
function halfTrainStep(family: string) {
  const cfg = parseDecoderConfig(
    JSON.parse(readFileSync(join(MODELS, `tiny-${family}`, 'config.json'), 'utf8')),
  );
  const s = scoreTensors(
    cfg,
    {
      lora: { rank: 4, alpha: 8, targets: [...LORA_TARGETS] },
      role: (n) => (n.endsWith('.lora_A') || n.endsWith('.lora_B') ? 'param' : 'half'),
      headFromEmbedding: cfg.tieWordEmbeddings,
    },
    'train',
  );
  const loss = op.neg(op.reduceSum(s.logp, undefined, false));
  const params = s.build.graph.inputs.filter((t) => t.kind === 'param');
  return { cfg, step: buildTrainStep({ graph: s.build.graph, loss, params, optimizer: { lr: 1e-3 } }) };
}

const PROJ = /^model\.layers\.(\d+)\.(self_attn|mlp)\.\w+_proj\.weight$/;

describe('backward re-cast of fp16 weights: structure', () => {
  it('the exported train graph: each forward Cast feeds only its forward MatMul; the backward reads its own Cast', () => {
    const { cfg, step } = halfTrainStep('qwen2');
    const { nodes, half, consumers, producer } = decode(step.model.bytes);
    let forward = 0;
    let backward = 0;
    for (const n of nodes) {
      if (n.opType !== 'Cast' || !half.has(n.input[0]) || !PROJ.test(n.input[0])) continue;
      // the forward Cast(W16): read by x @ W only
      expect(
        (consumers.get(n.output[0]) ?? []).map((c) => c.opType),
        `forward Cast of ${n.input[0]}`,
      ).toEqual(['MatMul']);
      forward++;
    }
    for (const n of nodes) {
      if (n.opType !== 'MatMul') continue;
      const c = producer.get(n.input[1]);
      const t = c?.opType === 'Cast' ? producer.get(c.input[0]) : undefined;
      if (t?.opType === 'Transpose' && half.has(t.input[0]) && PROJ.test(t.input[0])) backward++;
    }
    // 7 projections per layer; layer 0's q/k/v input gradient is not needed (it would only flow
    // into the frozen embedding), so 4 backward re-casts there
    expect(forward).toBe(7 * cfg.numLayers);
    expect(backward).toBe(7 * cfg.numLayers - 3);
  });

  it('the graph onnxruntime runs (after CSE and fusions) still has a separate backward Cast per weight', async () => {
    const { cfg, step } = halfTrainStep('qwen2');
    const file = join(mkdtempSync(join(tmpdir(), 'recast-')), 'optimized.onnx');
    const session = await ort.InferenceSession.create(step.model.bytes, {
      graphOptimizationLevel: 'all',
      optimizedModelFilePath: file,
      logSeverityLevel: 3,
    });
    await session.release();
    const { nodes, half, consumers } = decode(readFileSync(file));
    const casts = new Map<string, NodeProto[]>();
    for (const n of nodes)
      if (n.opType === 'Cast' && half.has(n.input[0]) && PROJ.test(n.input[0]))
        casts.set(n.input[0], [...(casts.get(n.input[0]) ?? []), n]);
    expect(casts.size).toBe(7 * cfg.numLayers);
    let separate = 0;
    for (const [name, cs] of casts) {
      // no Cast feeds both a forward and a backward product
      for (const c of cs) expect(consumers.get(c.output[0])?.length, name).toBe(1);
      if (cs.length === 2) separate++;
    }
    expect(separate).toBe(7 * cfg.numLayers - 3);
  });
});

describe('backward re-cast of fp16 weights: gradients on onnxruntime-node', () => {
  it('a two-layer LoRA block: gradients equal those of the same weights fed as float32 (1e-6)', async () => {
    const rnd = (n: number, seed: number) =>
      Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7919 + i * 104729) * 0.5);
    const roundHalf = (a: Float32Array) => a.map((v) => halfToFloat(floatToHalf(v)));
    const w1 = roundHalf(rnd(8 * 6, 1));
    const w2 = roundHalf(rnd(6 * 8, 2));
    const build = (half: boolean) => {
      const g = new Graph('recast');
      const x = g.input('x', 'float32', [2, 3, 8]);
      const frozen = (name: string, shape: number[]) =>
        half ? op.cast(g.input(name, 'float16', shape), 'float32') : g.input(name, 'float32', shape);
      const a = g.param('lora_A', 'float32', [8, 2]);
      const b = g.param('lora_B', 'float32', [2, 6]);
      const h = op.tanh(op.add(op.matmul(x, frozen('w1', [8, 6])), op.matmul(op.matmul(x, a), b)));
      const y = op.matmul(h, frozen('w2', [6, 8]));
      const loss = op.reduceSum(op.mul(y, y), undefined, false);
      const [ga, gb] = grad(loss, [a, b]);
      return buildModel(g, { loss, ga: ga!, gb: gb! });
    };
    const feeds = (half: boolean) => ({
      x: { dims: [2, 3, 8], data: rnd(48, 3) },
      lora_A: { dims: [8, 2], data: rnd(16, 4) },
      lora_B: { dims: [2, 6], data: rnd(12, 5) },
      w1: { dims: [8, 6], data: half ? Uint16Array.from(w1, floatToHalf) : w1 },
      w2: { dims: [6, 8], data: half ? Uint16Array.from(w2, floatToHalf) : w2 },
    });
    const halfRun = await (await engine.load(build(true))).run(feeds(true));
    const wideRun = await (await engine.load(build(false))).run(feeds(false));
    for (const k of ['loss', 'ga', 'gb']) {
      const [p, q] = [halfRun.outputs[k]!.data as Float32Array, wideRun.outputs[k]!.data as Float32Array];
      expect(p.length).toBe(q.length);
      for (let i = 0; i < p.length; i++)
        expect(Math.abs(p[i] - q[i]), `${k}[${i}]`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(q[i])));
    }
  });

  it('a LoRA step on tiny-qwen2 in fp16: gradient norm and adapter equal the float32 path (1e-6)', async () => {
    // the tiny checkpoint rewritten in F16: the float32 path then holds exactly the same values
    const src = join(MODELS, 'tiny-qwen2');
    const dir = mkdtempSync(join(tmpdir(), 'recast-qwen2-'));
    const ck = openCheckpointTensors(src);
    writeSafetensors(
      join(dir, 'model.safetensors'),
      Object.fromEntries(ck.names().map((n) => [n, { ...ck.read(n), dtype: 'F16' as const }])),
    );
    for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'])
      copyFileSync(join(src, f), join(dir, f));
    const lora = { rank: 4, alpha: 8, dropout: 0, targets: [...LORA_TARGETS], seed: 3 };
    const nll: LossHook = ({ logp, mask }) => ({
      loss: op.div(
        op.neg(op.reduceSum(op.mul(logp, mask), undefined, false)),
        op.reduceSum(mask, undefined, false),
      ),
    });
    const seqs: ScoredSequence[] = [
      { tokens: [3000, 17, 250, 1999, 42, 7, 812, 64, 3001, 5], start: 3 },
      { tokens: [5, 600, 2047, 17, 42, 812], start: 2 },
    ];
    const half = await CausalLM.load(dir, { engine, lora });
    const wide = await CausalLM.load(dir, { engine, lora, weightPrecision: 'float32' });
    expect(half.halfWeights.size).toBeGreaterThan(0);
    const opt = {
      mode: 'lora' as const,
      loss: nll,
      optimizer: { lr: 1e-2, weightDecay: 0, maxGradNorm: 1e6 },
    };
    const a = await (await half.trainer(opt)).step(seqs);
    const b = await (await wide.trainer(opt)).step(seqs);
    expect(Math.abs(a.loss - b.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(b.loss));
    expect(Math.abs(a.gradNorm! - b.gradNorm!)).toBeLessThanOrEqual(1e-6 * b.gradNorm!);
    const [wa, wb] = [await half.weights(), await wide.weights()];
    for (const [name, v] of wa) {
      if (!name.includes('lora')) continue;
      const u = wb.get(name)!;
      for (let i = 0; i < v.length; i++) expect(Math.abs(v[i] - u[i]), name).toBeLessThanOrEqual(1e-6);
    }
    await half.close();
    await wide.close();
  });
});
