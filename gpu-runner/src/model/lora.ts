// LoRA adapters in PEFT's on-disk format: adapter_config.json + adapter_model.safetensors with
// keys like `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` ([r, in]) and
// `...lora_B.weight` ([out, r]). In memory the factors are kept in graph layout (A: [in, r],
// B: [r, out]) next to the base weights.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DecoderConfig } from './config';
import { LORA_TARGETS, type LoraTarget, modulePath, projShape } from './decoder';
import { Rng } from './rng';
import { openCheckpointTensors, type TensorToWrite, writeSafetensors } from './safetensors';
import { transpose2d, type WeightMap } from './weights';

export interface LoraConfig {
  rank: number;
  alpha: number;
  dropout: number;
  targets: LoraTarget[];
  useRslora?: boolean;
}

export class AdapterError extends Error {
  constructor(
    readonly code: string,
    readonly field: string,
    message: string,
  ) {
    super(`${code}: ${field}: ${message}`);
  }
}

export function validateLoraConfig(c: LoraConfig): void {
  if (!Number.isInteger(c.rank) || c.rank < 1)
    throw new AdapterError('lora_bad_config', 'rank', `must be an integer >= 1, got ${c.rank}`);
  if (!(c.alpha > 0)) throw new AdapterError('lora_bad_config', 'alpha', `must be > 0, got ${c.alpha}`);
  if (!(c.dropout >= 0 && c.dropout < 1))
    throw new AdapterError('lora_bad_config', 'dropout', `must be in [0, 1), got ${c.dropout}`);
  if (c.targets.length === 0)
    throw new AdapterError('lora_bad_config', 'targets', 'name at least one module');
  for (const t of c.targets) {
    if (!LORA_TARGETS.includes(t)) {
      throw new AdapterError('lora_bad_config', 'targets', `${t} is not one of ${LORA_TARGETS.join(', ')}`);
    }
  }
}

export function loraScale(c: LoraConfig): number {
  return c.useRslora ? c.alpha / Math.sqrt(c.rank) : c.alpha / c.rank;
}

/** PEFT's default init: A ~ kaiming-uniform(a=√5) = U(±1/√in), B = 0 (the adapter starts as a no-op). */
export function initLora(cfg: DecoderConfig, c: LoraConfig, seed: number): WeightMap {
  validateLoraConfig(c);
  const rng = new Rng(seed);
  const out: WeightMap = new Map();
  for (let l = 0; l < cfg.numLayers; l++) {
    for (const mod of c.targets) {
      const [i, o] = projShape(cfg, mod);
      const bound = 1 / Math.sqrt(i);
      const a = new Float32Array(i * c.rank);
      for (let k = 0; k < a.length; k++) a[k] = (rng.next() * 2 - 1) * bound;
      out.set(`${modulePath(l, mod)}.lora_A`, a);
      out.set(`${modulePath(l, mod)}.lora_B`, new Float32Array(c.rank * o));
    }
  }
  return out;
}

const peftKey = (path: string, factor: 'A' | 'B') => `base_model.model.${path}.lora_${factor}.weight`;

export function saveAdapter(
  dir: string,
  cfg: DecoderConfig,
  c: LoraConfig,
  lora: WeightMap,
  baseModel: string,
): void {
  mkdirSync(dir, { recursive: true });
  const tensors: Record<string, TensorToWrite> = {};
  for (let l = 0; l < cfg.numLayers; l++) {
    for (const mod of c.targets) {
      const [i, o] = projShape(cfg, mod);
      const path = modulePath(l, mod);
      const a = lora.get(`${path}.lora_A`);
      const b = lora.get(`${path}.lora_B`);
      if (!a || !b) throw new AdapterError('lora_missing_factor', path, 'adapter weights are incomplete');
      tensors[peftKey(path, 'A')] = { shape: [c.rank, i], data: transpose2d(a, i, c.rank) };
      tensors[peftKey(path, 'B')] = { shape: [o, c.rank], data: transpose2d(b, c.rank, o) };
    }
  }
  writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors);
  const config = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: c.alpha,
    lora_dropout: c.dropout,
    modules_to_save: null,
    peft_type: 'LORA',
    r: c.rank,
    rank_pattern: {},
    revision: null,
    target_modules: [...c.targets],
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: c.useRslora ?? false,
  };
  writeFileSync(join(dir, 'adapter_config.json'), `${JSON.stringify(config, null, 2)}\n`);
}

/** PEFT's target_modules as decoder targets; a module this decoder has no LoRA site for is an error
 *  (dropping it would silently train or load a different adapter than the one on disk). */
function adapterTargets(tm: unknown): LoraTarget[] {
  if (tm === 'all-linear') return [...LORA_TARGETS];
  if (typeof tm === 'string') {
    throw new AdapterError(
      'adapter_unsupported',
      'target_modules',
      `the regular expression ${JSON.stringify(tm)} is not supported; list module names (${LORA_TARGETS.join(', ')})`,
    );
  }
  if (!Array.isArray(tm)) {
    throw new AdapterError('adapter_bad_config', 'target_modules', 'expected a list of module names');
  }
  const names = tm.map(String);
  const unknown = names.filter((t) => !(LORA_TARGETS as readonly string[]).includes(t));
  if (unknown.length > 0) {
    throw new AdapterError(
      'adapter_unsupported',
      'target_modules',
      `${unknown.join(', ')} ${unknown.length === 1 ? 'is' : 'are'} not LoRA sites of this decoder (${LORA_TARGETS.join(', ')} are)`,
    );
  }
  return names as LoraTarget[];
}

export function loadAdapter(
  dir: string,
  cfg: DecoderConfig,
): { config: LoraConfig; weights: WeightMap; baseModel: string } {
  const cpath = join(dir, 'adapter_config.json');
  if (!existsSync(cpath)) throw new AdapterError('adapter_missing', cpath, 'not a PEFT adapter folder');
  const raw = JSON.parse(readFileSync(cpath, 'utf8')) as Record<string, unknown>;
  if (raw.peft_type !== 'LORA')
    throw new AdapterError(
      'adapter_unsupported',
      'peft_type',
      `only LORA is supported, got ${raw.peft_type}`,
    );
  if (raw.use_dora === true)
    throw new AdapterError('adapter_unsupported', 'use_dora', 'DoRA adapters are not supported');
  if (raw.bias !== undefined && raw.bias !== 'none')
    throw new AdapterError('adapter_unsupported', 'bias', 'only bias "none" is supported');
  const hasPattern = (v: unknown) => v && typeof v === 'object' && Object.keys(v).length > 0;
  if (hasPattern(raw.rank_pattern) || hasPattern(raw.alpha_pattern)) {
    throw new AdapterError(
      'adapter_unsupported',
      'rank_pattern',
      'per-module rank/alpha patterns are not supported',
    );
  }
  const config: LoraConfig = {
    rank: raw.r as number,
    alpha: raw.lora_alpha as number,
    dropout: (raw.lora_dropout as number) ?? 0,
    targets: adapterTargets(raw.target_modules),
    useRslora: raw.use_rslora === true,
  };
  validateLoraConfig(config);
  const ck = openCheckpointTensors(dir, 'adapter_model');
  const weights: WeightMap = new Map();
  for (let l = 0; l < cfg.numLayers; l++) {
    for (const mod of config.targets) {
      const [i, o] = projShape(cfg, mod);
      const path = modulePath(l, mod);
      for (const f of ['A', 'B'] as const) {
        // PEFT also writes keys with the adapter name (".lora_A.default.weight") in some versions
        const key = [peftKey(path, f), `base_model.model.${path}.lora_${f}.default.weight`].find((k) =>
          ck.has(k),
        );
        if (!key)
          throw new AdapterError(
            'adapter_missing_tensor',
            peftKey(path, f),
            'not in adapter_model.safetensors',
          );
        const t = ck.read(key);
        const want = f === 'A' ? [config.rank, i] : [o, config.rank];
        if (t.shape.join(',') !== want.join(',')) {
          throw new AdapterError(
            'adapter_shape',
            key,
            `shape [${t.shape}], expected [${want}] for this base model`,
          );
        }
        weights.set(`${path}.lora_${f}`, transpose2d(t.data, want[0], want[1]));
      }
    }
  }
  return { config, weights, baseModel: String(raw.base_model_name_or_path ?? '') };
}

/** W' = W + scale · A·B in graph layout ([in, out]); returns new base weights (inputs untouched). */
export function mergeLora(cfg: DecoderConfig, base: WeightMap, c: LoraConfig, lora: WeightMap): WeightMap {
  const out: WeightMap = new Map(base);
  const s = loraScale(c);
  for (let l = 0; l < cfg.numLayers; l++) {
    for (const mod of c.targets) {
      const [i, o] = projShape(cfg, mod);
      const path = modulePath(l, mod);
      const w = Float32Array.from(base.get(`${path}.weight`)!);
      const a = lora.get(`${path}.lora_A`)!;
      const b = lora.get(`${path}.lora_B`)!;
      for (let x = 0; x < i; x++) {
        for (let k = 0; k < c.rank; k++) {
          const av = a[x * c.rank + k] * s;
          if (av === 0) continue;
          const row = x * o;
          const brow = k * o;
          for (let y = 0; y < o; y++) w[row + y] += av * b[brow + y];
        }
      }
      out.set(`${path}.weight`, w);
    }
  }
  return out;
}
