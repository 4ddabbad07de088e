// Plain TypeScript reference forward pass for Qwen2 / Qwen3 / Llama decoders, written from the
// published architectures (HF modeling_qwen2/qwen3/llama) with loops. It shares no code with the
// graph decoder (it reads config.json itself) so the two check each other in tests. Slow; tests only.
export type RefWeights = (name: string) => Float32Array | undefined;

/** A PEFT LoRA adapter as stored on disk: factors in PyTorch layout (A [r, in], B [out, r]). */
export interface RefLora {
  scale: number;
  rank: number;
  /** key such as `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` */
  tensor: (key: string) => Float32Array | undefined;
}

interface RefConfig {
  arch: string;
  H: number;
  I: number;
  L: number;
  nH: number;
  nKV: number;
  hd: number;
  V: number;
  eps: number;
  theta: number;
  scaling: Record<string, number | string> | null;
  tied: boolean;
}

function readConfig(c: Record<string, unknown>): RefConfig {
  const H = c.hidden_size as number;
  const nH = c.num_attention_heads as number;
  return {
    arch: (c.architectures as string[])[0],
    H,
    I: c.intermediate_size as number,
    L: c.num_hidden_layers as number,
    nH,
    nKV: (c.num_key_value_heads as number) ?? nH,
    hd: (c.head_dim as number) ?? H / nH,
    V: c.vocab_size as number,
    eps: (c.rms_norm_eps as number) ?? 1e-6,
    theta: (c.rope_theta as number) ?? 10000,
    scaling: (c.rope_scaling as Record<string, number | string> | null) ?? null,
    tied: c.tie_word_embeddings === true,
  };
}

function rmsnorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const r = 1 / Math.sqrt(ss / x.length + eps);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * r * w[i];
  return out;
}

/** y = W x (+ b), W is [out, in] row-major as stored by PyTorch Linear */
function linear(x: Float64Array, W: Float32Array, out: number, b?: Float32Array): Float64Array {
  const n = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o] : 0;
    for (let i = 0; i < n; i++) s += W[o * n + i] * x[i];
    y[o] = s;
  }
  return y;
}

function invFreq(c: RefConfig): number[] {
  const out: number[] = [];
  for (let i = 0; i < c.hd; i += 2) {
    let f = 1 / c.theta ** (i / c.hd);
    const s = c.scaling;
    const kind = s ? (s.rope_type ?? s.type) : 'default';
    if (s && kind === 'linear') f = f / (s.factor as number);
    if (s && kind === 'llama3') {
      const factor = s.factor as number;
      const lo = s.low_freq_factor as number;
      const hi = s.high_freq_factor as number;
      const old = s.original_max_position_embeddings as number;
      const wl = (2 * Math.PI) / f;
      if (wl > old / lo) f = f / factor;
      else if (wl >= old / hi) {
        const sm = (old / wl - lo) / (hi - lo);
        f = (1 - sm) * (f / factor) + sm * f;
      }
    }
    out.push(f);
  }
  return out;
}

/** rotate_half RoPE on one head vector in place */
function rope(v: Float64Array, off: number, hd: number, pos: number, freqs: number[]): void {
  const half = hd / 2;
  for (let i = 0; i < half; i++) {
    const a = pos * freqs[i];
    const cos = Math.cos(a);
    const sin = Math.sin(a);
    const x1 = v[off + i];
    const x2 = v[off + i + half];
    v[off + i] = x1 * cos - x2 * sin;
    v[off + i + half] = x2 * cos + x1 * sin;
  }
}

/** Logits [T, V] (row-major) for one unpadded sequence. */
export function referenceLogits(
  configJson: Record<string, unknown>,
  w: RefWeights,
  ids: number[],
  lora?: RefLora,
): Float64Array {
  const c = readConfig(configJson);
  const need = (n: string): Float32Array => {
    const t = w(n);
    if (!t) throw new Error(`reference: missing weight ${n}`);
    return t;
  };
  // y = W x + b + scale · B (A x), the adapter read in PEFT's own layout
  const proj = (x: Float64Array, module: string, out: number, bias?: Float32Array): Float64Array => {
    const y = linear(x, need(`${module}.weight`), out, bias);
    const A = lora?.tensor(`base_model.model.${module}.lora_A.weight`);
    const B = lora?.tensor(`base_model.model.${module}.lora_B.weight`);
    if (lora && A && B) {
      const ax = linear(x, A, lora.rank);
      const bax = linear(ax, B, out);
      for (let i = 0; i < out; i++) y[i] += lora.scale * bax[i];
    }
    return y;
  };
  const qwen2 = c.arch === 'Qwen2ForCausalLM';
  const qwen3 = c.arch === 'Qwen3ForCausalLM';
  const freqs = invFreq(c);
  const T = ids.length;
  const E = need('model.embed_tokens.weight');
  let hs: Float64Array[] = ids.map((id) => Float64Array.from(E.subarray(id * c.H, (id + 1) * c.H)));
  const group = c.nH / c.nKV;
  for (let l = 0; l < c.L; l++) {
    const p = `model.layers.${l}`;
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    const qs: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const x = rmsnorm(hs[t], need(`${p}.input_layernorm.weight`), c.eps);
      const q = proj(
        x,
        `${p}.self_attn.q_proj`,
        c.nH * c.hd,
        qwen2 ? need(`${p}.self_attn.q_proj.bias`) : w(`${p}.self_attn.q_proj.bias`),
      );
      const k = proj(
        x,
        `${p}.self_attn.k_proj`,
        c.nKV * c.hd,
        qwen2 ? need(`${p}.self_attn.k_proj.bias`) : w(`${p}.self_attn.k_proj.bias`),
      );
      const v = proj(
        x,
        `${p}.self_attn.v_proj`,
        c.nKV * c.hd,
        qwen2 ? need(`${p}.self_attn.v_proj.bias`) : w(`${p}.self_attn.v_proj.bias`),
      );
      for (let h = 0; h < c.nH; h++) {
        if (qwen3)
          q.set(
            rmsnorm(q.subarray(h * c.hd, (h + 1) * c.hd), need(`${p}.self_attn.q_norm.weight`), c.eps),
            h * c.hd,
          );
        rope(q, h * c.hd, c.hd, t, freqs);
      }
      for (let h = 0; h < c.nKV; h++) {
        if (qwen3)
          k.set(
            rmsnorm(k.subarray(h * c.hd, (h + 1) * c.hd), need(`${p}.self_attn.k_norm.weight`), c.eps),
            h * c.hd,
          );
        rope(k, h * c.hd, c.hd, t, freqs);
      }
      qs.push(q);
      ks.push(k);
      vs.push(v);
    }
    const next: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const att = new Float64Array(c.nH * c.hd);
      for (let h = 0; h < c.nH; h++) {
        const kh = Math.floor(h / group);
        const scores: number[] = [];
        let max = Number.NEGATIVE_INFINITY;
        for (let s = 0; s <= t; s++) {
          let d = 0;
          for (let i = 0; i < c.hd; i++) d += qs[t][h * c.hd + i] * ks[s][kh * c.hd + i];
          d /= Math.sqrt(c.hd);
          scores.push(d);
          if (d > max) max = d;
        }
        let z = 0;
        for (let s = 0; s <= t; s++) {
          scores[s] = Math.exp(scores[s] - max);
          z += scores[s];
        }
        for (let s = 0; s <= t; s++) {
          for (let i = 0; i < c.hd; i++) att[h * c.hd + i] += (scores[s] / z) * vs[s][kh * c.hd + i];
        }
      }
      const o = proj(att, `${p}.self_attn.o_proj`, c.H, w(`${p}.self_attn.o_proj.bias`));
      const h1 = new Float64Array(c.H);
      for (let i = 0; i < c.H; i++) h1[i] = hs[t][i] + o[i];
      const x2 = rmsnorm(h1, need(`${p}.post_attention_layernorm.weight`), c.eps);
      const g = proj(x2, `${p}.mlp.gate_proj`, c.I);
      const u = proj(x2, `${p}.mlp.up_proj`, c.I);
      const a = new Float64Array(c.I);
      for (let i = 0; i < c.I; i++) a[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
      const d = proj(a, `${p}.mlp.down_proj`, c.H);
      for (let i = 0; i < c.H; i++) h1[i] += d[i];
      next.push(h1);
    }
    hs = next;
  }
  const head = c.tied ? E : need('lm_head.weight');
  const out = new Float64Array(T * c.V);
  for (let t = 0; t < T; t++) {
    const x = rmsnorm(hs[t], need('model.norm.weight'), c.eps);
    out.set(linear(x, head, c.V), t * c.V);
  }
  return out;
}
