// transformers v5 configs (`rope_parameters`), math-changing keys, tokenizer-free loading and
// adapter target checks, on the real tiny checkpoints and onnxruntime-node.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../src/engine';
import { parseDecoderConfig } from '../src/model/config';
import { CausalLM } from '../src/model/model';
import { ROOT } from './harness';

const MODELS = join(ROOT, 'gpu-runner', 'models');
const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
const TOKENS = [5, 17, 300, 42, 1000, 7, 2500, 99, 3, 64, 128, 256, 511, 900, 1200, 2048];

/** A copy of a tiny checkpoint whose config.json is `edit(config)`; tokenizer files optional. */
function variant(name: string, edit: (c: Record<string, unknown>) => void, tokenizer = true): string {
  const src = join(MODELS, name);
  const dir = mkdtempSync(join(tmpdir(), `cgrpo-${name}-`));
  const files = ['generation_config.json', 'model.safetensors'];
  if (tokenizer) files.push('tokenizer.json', 'tokenizer_config.json');
  for (const f of files) copyFileSync(join(src, f), join(dir, f));
  const c = readJson(join(src, 'config.json'));
  edit(c);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(c, null, 2));
  return dir;
}

/** transformers 5 moves rope_theta and rope_scaling into one `rope_parameters` dict. */
function toV5(c: Record<string, unknown>): void {
  const scaling = (c.rope_scaling ?? { rope_type: 'default' }) as Record<string, unknown>;
  c.rope_parameters = { ...scaling, rope_theta: c.rope_theta };
  delete c.rope_theta;
  delete c.rope_scaling;
  c.transformers_version = '5.0.0';
  c.dtype = c.torch_dtype;
  delete c.torch_dtype;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

let engine: Engine;
const dirs: string[] = [];
beforeAll(async () => {
  engine = await createEngine({ threads: 1 });
});
afterAll(async () => {
  await engine.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function logits(dir: string, opts: { tokenizer?: boolean } = {}): Promise<Float32Array> {
  const m = await CausalLM.load(dir, { engine, ...opts });
  try {
    return await m.fullLogits(TOKENS);
  } finally {
    await m.close();
  }
}

describe('transformers v5 configs', () => {
  for (const name of ['tiny-llama', 'tiny-qwen2', 'tiny-qwen3']) {
    it(`${name}: rope_parameters gives the v4 logits, and RoPE settings reach the graph`, async () => {
      const v5 = variant(name, toV5);
      dirs.push(v5);
      const v4Logits = await logits(join(MODELS, name));
      expect(maxDiff(await logits(v5), v4Logits)).toBe(0);
      // the same file with another theta must move the logits, or the comparison above proves nothing
      const otherTheta = variant(name, (c) => {
        toV5(c);
        (c.rope_parameters as Record<string, unknown>).rope_theta = 1234;
      });
      dirs.push(otherTheta);
      expect(maxDiff(await logits(otherTheta), v4Logits)).toBeGreaterThan(1e-3);
    });
  }

  it('tiny-llama: the llama3 scaling inside rope_parameters is applied (dropping it changes logits)', async () => {
    const plain = variant('tiny-llama', (c) => {
      toV5(c);
      c.rope_parameters = { rope_type: 'default', rope_theta: 500000 };
    });
    dirs.push(plain);
    expect(maxDiff(await logits(plain), await logits(join(MODELS, 'tiny-llama')))).toBeGreaterThan(1e-3);
  });

  it('reads both layouts to the same decoder config', () => {
    for (const name of ['tiny-llama', 'tiny-qwen2', 'tiny-qwen3']) {
      const v4 = readJson(join(MODELS, name, 'config.json'));
      const v5 = structuredClone(v4);
      toV5(v5);
      expect(parseDecoderConfig(v5)).toEqual(parseDecoderConfig(v4));
    }
  });

  it('refuses RoPE types and keys it does not implement, naming the key', () => {
    const base = readJson(join(MODELS, 'tiny-llama', 'config.json'));
    const v5 = (rope: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
      const c = structuredClone(base);
      toV5(c);
      c.rope_parameters = rope;
      return { ...c, ...extra };
    };
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        v5({ rope_type: 'yarn', rope_theta: 1e6, factor: 4 }),
        /^config_unsupported: config\.json rope_parameters\.rope_type: yarn is not supported \(default, linear, llama3 are\)/,
      ],
      [v5({ rope_type: 'dynamic', rope_theta: 1e6, factor: 2 }), /rope_parameters\.rope_type: dynamic/],
      [v5({ rope_type: 'longrope', rope_theta: 1e6 }), /rope_parameters\.rope_type: longrope/],
      [
        v5({ rope_type: 'linear', rope_theta: 1e6, factor: 2, attention_factor: 1.2 }),
        /config_unsupported: config\.json rope_parameters\.attention_factor: 1\.2 is not a linear RoPE setting/,
      ],
      [
        v5({ rope_type: 'linear', rope_theta: 1e6 }),
        /config_missing_field: config\.json rope_parameters\.factor/,
      ],
      [
        v5({ full_attention: { rope_type: 'default', rope_theta: 1e4 } }),
        /config_unsupported: config\.json rope_parameters: per-layer-type RoPE \(full_attention\)/,
      ],
      [
        v5({ rope_type: 'default', rope_theta: 1e6, partial_rotary_factor: 0.5 }),
        /rope_parameters\.partial_rotary_factor/,
      ],
      [
        v5({ rope_type: 'default', rope_theta: 1e6 }, { rope_theta: 1e4 }),
        /config_bad_field: config\.json rope_theta: 10000 disagrees with rope_parameters\.rope_theta 1000000/,
      ],
      [
        { ...base, rope_scaling: { rope_type: 'yarn', factor: 4 } },
        /config_unsupported: config\.json rope_scaling\.rope_type: yarn/,
      ],
      [
        { ...base, partial_rotary_factor: 0.5 },
        /config_unsupported: config\.json partial_rotary_factor: 0\.5 changes the decoder's math/,
      ],
      [{ ...base, layer_types: ['full_attention', 'sliding_attention'] }, /config\.json layer_types:/],
      [{ ...base, final_logit_softcapping: 30 }, /config\.json final_logit_softcapping:/],
      [{ ...base, num_experts: 8 }, /config\.json num_experts:/],
    ];
    for (const [raw, want] of cases) expect(() => parseDecoderConfig(raw)).toThrow(want);
    // neutral values of the same keys load
    expect(() =>
      parseDecoderConfig({
        ...base,
        partial_rotary_factor: 1,
        layer_types: ['full_attention', 'full_attention'],
        final_logit_softcapping: null,
      }),
    ).not.toThrow();
  });
});

describe('token-id work without a tokenizer', () => {
  it('loads weights without tokenizer.json and gives the same logits; text methods name the option', async () => {
    const bare = variant('tiny-qwen3', () => {}, false);
    dirs.push(bare);
    await expect(CausalLM.load(bare, { engine })).rejects.toThrow(/tokenizer_missing/);
    const m = await CausalLM.load(bare, { engine, tokenizer: false });
    try {
      expect(maxDiff(await m.fullLogits(TOKENS), await logits(join(MODELS, 'tiny-qwen3')))).toBe(0);
      expect(m.vocabLimit).toBe(m.config.vocabSize);
      expect(m.eosTokenIds.length).toBeGreaterThan(0);
      const [s] = await m.score([{ tokens: TOKENS, start: 4 }]);
      expect(s.logp.length).toBe(TOKENS.length - 4);
      expect(() => m.tokenizer.encode('hi')).toThrow(/tokenizer_missing: .*tokenizer: false/);
    } finally {
      await m.close();
    }
  });
});

describe('adapter target_modules', () => {
  it('an adapter naming a module this decoder has no LoRA site for is refused by name', async () => {
    const m = await CausalLM.load(join(MODELS, 'tiny-llama'), {
      engine,
      lora: { rank: 2, alpha: 4, dropout: 0, targets: ['q_proj', 'v_proj'] },
    });
    try {
      const dir = mkdtempSync(join(tmpdir(), 'cgrpo-adapter-'));
      dirs.push(dir);
      await m.saveAdapter(dir);
      const cfgPath = join(dir, 'adapter_config.json');
      const cfg = readJson(cfgPath);
      await m.loadAdapter(dir);
      writeFileSync(
        cfgPath,
        JSON.stringify({ ...cfg, target_modules: ['q_proj', 'v_proj', 'embed_tokens', 'lm_head'] }),
      );
      await expect(m.loadAdapter(dir)).rejects.toThrow(
        /^adapter_unsupported: target_modules: embed_tokens, lm_head are not LoRA sites of this decoder/,
      );
      writeFileSync(cfgPath, JSON.stringify({ ...cfg, target_modules: '.*attn.*' }));
      await expect(m.loadAdapter(dir)).rejects.toThrow(/target_modules: the regular expression/);
    } finally {
      await m.close();
    }
  });
});

describe('weights move into the engine worker', () => {
  it("setState with transfer detaches the sender's buffers and the worker holds the values", async () => {
    const m = await CausalLM.load(join(MODELS, 'tiny-qwen3'), { engine });
    try {
      const g = await m.decodeGraph();
      const H = m.config.hiddenSize;
      const moved = new Float32Array(H).fill(0.5);
      const copied = new Float32Array(H).fill(0.25);
      await g.setState(
        'transfer-test',
        { 'model.norm.weight': { dims: [H], data: moved } },
        { transfer: true },
      );
      expect(moved.byteLength).toBe(0);
      expect(
        Array.from(
          (await g.getState('transfer-test', ['model.norm.weight']))['model.norm.weight']
            .data as Float32Array,
        ),
      ).toEqual(new Array(H).fill(0.5));
      await g.setState('transfer-test', { 'model.norm.weight': { dims: [H], data: copied } });
      expect(copied.byteLength).toBe(H * 4);
      await g.dropState('transfer-test');
    } finally {
      await m.close();
    }
  });
});
