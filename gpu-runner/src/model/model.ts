// A causal LM loaded from a Hugging Face checkpoint folder: tokenizer + chat template, weights in
// the engine's runtime state (one copy shared by the decode, score and train graphs), an optional
// LoRA adapter, and the operations the runner needs: generate, score, train, save/load/merge.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type AdamWConfig,
  type BuiltModel,
  buildAccumulatingTrainStep,
  buildTrainStep,
  type CompiledModel,
  createEngine,
  type Dim,
  type DType,
  type Engine,
  type Feed,
  type Tensor,
} from '../engine';
import { type DecoderConfig, parseDecoderConfig } from './config';
import { weightShapes } from './decoder';
import {
  attentionBias,
  buildDecodeChunkGraph,
  buildDecodeGraph,
  buildGatherRowsGraph,
  buildLogitsGraph,
  buildLoopDecodeGraph,
  buildScoreGraph,
  pastKey,
  pastValue,
  presentKey,
  presentValue,
  type SampleMode,
  scoreTensors,
} from './graphs';
import { initLora, type LoraConfig, loadAdapter, mergeLora, saveAdapter } from './lora';
import { float32ToHalf, openCheckpointTensors, writeSafetensors } from './safetensors';
import { loadTokenizer, type ModelTokenizer, TokenizerError } from './tokenizer';
import {
  loadGraphWeights,
  type StoredWeightMap,
  toCheckpointTensors,
  type WeightMap,
  type WeightPrecision,
  widen,
} from './weights';

export type TrainMode = 'lora' | 'full';

export interface LoadOptions {
  /** share one engine between models; one is created (CPU, worker thread) otherwise */
  engine?: Engine;
  threads?: number;
  /** a new LoRA adapter (initialised the PEFT way) ... */
  lora?: LoraConfig & { seed?: number };
  /** ... or a saved PEFT adapter folder */
  adapterPath?: string;
  /** false: load the weights without tokenizer files, for token-id work (score, train, generate on
   *  ids); text methods then fail with `tokenizer_missing` */
  tokenizer?: boolean;
  /** `checkpoint` (default): frozen weights stay in the checkpoint's precision (BF16/F16 as fp16,
   *  cast to float32 inside the graphs; see docs/engine.md); `float32`: widened at load */
  weightPrecision?: WeightPrecision;
}

/** A sequence to score: logp/entropy are returned for tokens[start..] (start >= 1). */
export interface ScoredSequence {
  tokens: number[];
  start: number;
}

export interface TokenScores {
  logp: Float32Array;
  entropy: Float32Array;
}

/** What a loss hook receives: per-token tensors [batch, seq] of the train graph, where position t
 *  holds the log-prob / entropy of token t+1, `mask` is 1 where that token is scored. */
export interface LossContext {
  logp: Tensor;
  entropy: Tensor;
  mask: Tensor;
  /** log-softmax over the vocabulary [batch, seq, vocab], e.g. for token accuracy (argmax = target) */
  logProbs?: Tensor;
  /** declares an extra per-step input (advantages, old log-probs, ...); dims may use 'batch' and 'seq' */
  input(name: string, dtype: DType, shape: Dim[]): Tensor;
}

/** `metricWeights[name]`, when given, is the weight (e.g. token count) of the ratio metric `name`, so
 *  micro-batched steps report Σ v·w / Σ w; other metrics are summed over micro-batches. */
export type LossHook = (ctx: LossContext) => {
  loss: Tensor;
  metrics?: Record<string, Tensor>;
  metricWeights?: Record<string, Tensor>;
};

export interface TrainerOptions {
  mode: TrainMode;
  loss: LossHook;
  optimizer: AdamWConfig;
  /** softmax temperature used for logp/entropy in the loss (default 1) */
  temperature?: number;
}

export interface TrainStepResult {
  loss: number;
  lr: number;
  gradNorm: number | null;
  metrics: Record<string, Float32Array>;
  ms: number;
}

export class ModelError extends Error {
  constructor(
    readonly code: string,
    readonly field: string,
    message: string,
  ) {
    super(`${code}: ${field}: ${message}`);
  }
}

let modelCount = 0;

function readJson(path: string): Record<string, unknown> | undefined {
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>) : undefined;
}

/** Token ids only: vocabulary size, pad/eos/bos from config.json; any text method names the option. */
function idsOnlyTokenizer(dir: string, raw: Record<string, unknown>, config: DecoderConfig): ModelTokenizer {
  const noText = (): never => {
    throw new TokenizerError(
      'tokenizer_missing',
      join(dir, 'tokenizer.json'),
      'the model was loaded with tokenizer: false (token ids only); load it with its tokenizer for text',
    );
  };
  const pad = typeof raw.pad_token_id === 'number' ? raw.pad_token_id : null;
  return {
    vocabSize: config.vocabSize,
    padTokenId: pad ?? config.eosTokenIds[0] ?? 0,
    eosTokenIds: config.eosTokenIds,
    bosTokenId: config.bosTokenId,
    tokenId: () => undefined,
    encode: noText,
    decode: noText,
    applyChatTemplate: noText,
  };
}

/** Right-padded batch for score/train graphs. */
export function packSequences(seqs: readonly ScoredSequence[], padId: number) {
  const batch = seqs.length;
  const seq = Math.max(...seqs.map((s) => s.tokens.length)) - 1;
  if (!(seq >= 1))
    throw new ModelError('score_bad_sequence', 'tokens', 'every sequence needs at least 2 tokens');
  const ids = new BigInt64Array(batch * seq).fill(BigInt(padId));
  const targets = new BigInt64Array(batch * seq).fill(BigInt(padId));
  const positions = new BigInt64Array(batch * seq);
  const mask = new Float32Array(batch * seq);
  const valid: Uint8Array[] = [];
  seqs.forEach((s, b) => {
    if (s.start < 1 || s.start > s.tokens.length) {
      throw new ModelError(
        'score_bad_sequence',
        `sequences[${b}].start`,
        `must be in [1, ${s.tokens.length}], got ${s.start}`,
      );
    }
    const v = new Uint8Array(seq);
    for (let t = 0; t < seq; t++) {
      positions[b * seq + t] = BigInt(t);
      if (t < s.tokens.length - 1) {
        ids[b * seq + t] = BigInt(s.tokens[t]);
        targets[b * seq + t] = BigInt(s.tokens[t + 1]);
        v[t] = 1;
        if (t + 1 >= s.start) mask[b * seq + t] = 1;
      }
    }
    valid.push(v);
  });
  // right padding: causal masking alone keeps real tokens off the pads
  const causal = valid.map(() => new Uint8Array(seq).fill(1));
  return {
    batch,
    seq,
    feeds: {
      input_ids: { dims: [batch, seq], data: ids },
      position_ids: { dims: [batch, seq], data: positions },
      attn_bias: { dims: [batch, 1, seq, seq], data: attentionBias(causal, seq) },
      targets: { dims: [batch, seq], data: targets },
    } satisfies Record<string, Feed>,
    mask,
  };
}

export class CausalLM {
  readonly stateKey = `model-${++modelCount}`;
  private graphs = new Map<string, Promise<CompiledModel>>();
  private lora: { config: LoraConfig } | null = null;
  private fullTrained = false;
  private closed = false;
  private queue: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every earlier exclusive call: generation (which owns the KV cache in the
   *  state) and train steps (which rebind weights) never interleave on one model. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private constructor(
    readonly dir: string,
    readonly config: DecoderConfig,
    readonly tokenizer: ModelTokenizer,
    readonly engine: Engine,
    private readonly ownsEngine: boolean,
  ) {}

  /** Loads config.json, generation_config.json, tokenizer files and the safetensors weights. */
  static async load(dir: string, opts: LoadOptions = {}): Promise<CausalLM> {
    const raw = readJson(join(dir, 'config.json'));
    if (!raw)
      throw new ModelError(
        'checkpoint_missing_config',
        join(dir, 'config.json'),
        'not a Hugging Face checkpoint folder',
      );
    const generation = readJson(join(dir, 'generation_config.json'));
    const config = parseDecoderConfig(raw, generation);
    const tokenizer =
      opts.tokenizer === false ? idsOnlyTokenizer(dir, raw, config) : loadTokenizer(dir, config.eosTokenIds);
    const engine = opts.engine ?? (await createEngine({ threads: opts.threads }));
    const model = new CausalLM(dir, config, tokenizer, engine, !opts.engine);
    const weights = loadGraphWeights(
      openCheckpointTensors(dir),
      config,
      opts.weightPrecision ?? 'checkpoint',
    );
    if (opts.adapterPath) {
      const a = loadAdapter(opts.adapterPath, config);
      model.lora = { config: a.config };
      for (const [k, v] of a.weights) weights.set(k, v);
    } else if (opts.lora) {
      model.lora = { config: opts.lora };
      for (const [k, v] of initLora(config, opts.lora, opts.lora.seed ?? 0)) weights.set(k, v);
    }
    await model.setWeights(weights);
    return model;
  }

  get eosTokenIds(): number[] {
    return this.tokenizer.eosTokenIds;
  }
  /** ids at or above this are padding rows of the embedding, never sampled */
  get vocabLimit(): number {
    return Math.min(this.config.vocabSize, this.tokenizer.vocabSize);
  }
  get loraConfig(): LoraConfig | null {
    return this.lora?.config ?? null;
  }

  private familyOpts() {
    const l = this.lora?.config;
    return {
      lora: l ? { rank: l.rank, alpha: l.alpha, targets: l.targets, useRslora: l.useRslora } : null,
      role: (name: string) => (this.half.has(name) ? ('half' as const) : ('input' as const)),
    };
  }
  private graphKey(kind: string): string {
    return `${kind}:${JSON.stringify(this.familyOpts())}:${this.fullTrained}:half${this.halfVersion}`;
  }
  /** weights kept as fp16 bits in the state (fed as float16); `halfVersion` counts changes of the set */
  private half = new Set<string>();
  private halfVersion = 0;
  /** names of the weights held in half precision (fp16) */
  get halfWeights(): ReadonlySet<string> {
    return this.half;
  }
  private compiled(kind: string, build: () => BuiltModel): Promise<CompiledModel> {
    const key = this.graphKey(kind);
    let p = this.graphs.get(key);
    if (!p) {
      p = this.engine.load(build());
      this.graphs.set(key, p);
    }
    return p;
  }
  private headFromEmbedding(): boolean {
    return this.config.tieWordEmbeddings && this.fullTrained;
  }
  /** @internal graph for one decode step (prefill included) */
  decodeGraph(): Promise<CompiledModel> {
    return this.compiled('decode', () =>
      buildDecodeGraph(this.config, { ...this.familyOpts(), headFromEmbedding: this.headFromEmbedding() }),
    );
  }
  /** @internal whole-generation graph (prefill + ONNX Loop), one per sampling shape */
  loopDecodeGraph(greedy: boolean, topK: number): Promise<CompiledModel> {
    return this.compiled(`loop:${greedy}:${topK}`, () =>
      buildLoopDecodeGraph(this.config, {
        ...this.familyOpts(),
        headFromEmbedding: this.headFromEmbedding(),
        greedy,
        topK,
        vocabLimit: this.vocabLimit,
      }),
    );
  }
  /** @internal */
  gatherGraph(): Promise<CompiledModel> {
    return this.compiled('gather', () => buildGatherRowsGraph(this.config));
  }
  private scoreGraph(): Promise<CompiledModel> {
    return this.compiled('score', () =>
      buildScoreGraph(this.config, { ...this.familyOpts(), headFromEmbedding: this.headFromEmbedding() }),
    );
  }

  /** Puts graph-layout weights into the runtime state (one copy, shared by every graph). fp16
   *  arrays are kept as fp16; a float32 array for a weight held in fp16 (merged adapter) is rounded
   *  back to fp16, or the weight becomes float32 where a value is beyond fp16's range. */
  private async setWeights(weights: StoredWeightMap): Promise<void> {
    const shapes = weightShapes(this.config, this.familyOpts().lora);
    const before = [...this.half].join();
    for (const [name, data] of weights) {
      if (data instanceof Uint16Array) this.half.add(name);
      else if (this.half.has(name)) {
        const h = float32ToHalf(data);
        if (h) weights.set(name, h);
        else this.half.delete(name);
      }
    }
    if ([...this.half].join() !== before) this.halfVersion++;
    const g = await this.decodeGraph();
    // names the decode graph does not read (the tied head copy after full fine-tuning) are still
    // accepted by setState as long as one of our graphs declares them
    const feeds: Record<string, Feed> = {};
    for (const [name, data] of weights) {
      const dims = shapes.get(name);
      if (!dims) continue;
      if (!g.model.inputs.some((s) => s.name === name)) continue;
      feeds[name] = { dims, data };
    }
    // moved into the worker, not copied: the map's arrays are fresh copies no caller keeps
    await g.setState(this.stateKey, feeds, { transfer: true });
  }

  /** Current weights (graph layout) copied out of the runtime state, fp16 ones widened to float32. */
  async weights(): Promise<WeightMap> {
    const g = await this.decodeGraph();
    const names = [...weightShapes(this.config, this.familyOpts().lora).keys()];
    const st = await g.getState(this.stateKey, names);
    const out: WeightMap = new Map();
    for (const [k, v] of Object.entries(st)) out.set(k, widen(v.data as Float32Array | Uint16Array));
    return out;
  }

  /** @internal `steps` decode steps with in-graph sampling, one graph per (mode, steps) */
  decodeChunkGraph(mode: SampleMode, steps: number): Promise<CompiledModel> {
    return this.compiled(`chunk:${mode}:${steps}`, () =>
      buildDecodeChunkGraph(this.config, {
        ...this.familyOpts(),
        headFromEmbedding: this.headFromEmbedding(),
        mode,
        steps,
        vocabLimit: this.vocabLimit,
      }),
    );
  }
  /** @internal one decode-chunk run on the cached K/V (advanced by `steps` in the state);
   *  returns the sampled ids and their log-probs [batch, steps] */
  async decodeChunkRun(
    mode: SampleMode,
    steps: number,
    feeds: Record<string, Feed>,
  ): Promise<{ tokens: BigInt64Array; logp: Float32Array; ms: number }> {
    const g = await this.decodeChunkGraph(mode, steps);
    const bind: Record<string, string> = {};
    for (let l = 0; l < this.config.numLayers; l++) {
      bind[presentKey(l)] = pastKey(l);
      bind[presentValue(l)] = pastValue(l);
    }
    const r = await g.run(feeds, { stateKey: this.stateKey, bind, fetch: ['tokens_out', 'logp'] });
    return {
      tokens: r.outputs.tokens_out.data as BigInt64Array,
      logp: r.outputs.logp.data as Float32Array,
      ms: r.ms,
    };
  }

  /** @internal one decode run: feeds plus the cached K/V of the state; returns last-position logits */
  async decodeRun(feeds: Record<string, Feed>): Promise<{ logits: Float32Array; ms: number }> {
    const g = await this.decodeGraph();
    const bind: Record<string, string> = {};
    for (let l = 0; l < this.config.numLayers; l++) {
      bind[presentKey(l)] = pastKey(l);
      bind[presentValue(l)] = pastValue(l);
    }
    const r = await g.run(feeds, { stateKey: this.stateKey, bind, fetch: ['logits'] });
    return { logits: r.outputs.logits.data as Float32Array, ms: r.ms };
  }

  /** @internal empty K/V cache for `batch` rows */
  emptyCache(batch: number): Record<string, Feed> {
    const f: Record<string, Feed> = {};
    const dims = [batch, this.config.numKvHeads, 0, this.config.headDim];
    for (let l = 0; l < this.config.numLayers; l++) {
      f[pastKey(l)] = { dims, data: new Float32Array(0) };
      f[pastValue(l)] = { dims, data: new Float32Array(0) };
    }
    return f;
  }

  /** @internal keeps (and repeats) rows of the cached K/V: row i of the new cache = old row rows[i] */
  async selectCacheRows(rows: number[]): Promise<void> {
    const g = await this.gatherGraph();
    const bind: Record<string, string> = {};
    for (let l = 0; l < this.config.numLayers; l++) {
      bind[presentKey(l)] = pastKey(l);
      bind[presentValue(l)] = pastValue(l);
    }
    await g.run(
      { rows: { dims: [rows.length], data: BigInt64Array.from(rows.map(BigInt)) } },
      { stateKey: this.stateKey, bind, fetch: [] },
    );
  }

  /** Logits [tokens.length, vocab] of one unpadded sequence, recomputed without a cache (tests, debugging). */
  async fullLogits(tokens: readonly number[]): Promise<Float32Array> {
    const g = await this.compiled('logits', () =>
      buildLogitsGraph(this.config, { ...this.familyOpts(), headFromEmbedding: this.headFromEmbedding() }),
    );
    const T = tokens.length;
    const r = await g.run(
      {
        input_ids: { dims: [1, T], data: BigInt64Array.from(tokens.map(BigInt)) },
        position_ids: { dims: [1, T], data: BigInt64Array.from(tokens.map((_, i) => BigInt(i))) },
        attn_bias: { dims: [1, 1, T, T], data: attentionBias([new Uint8Array(T).fill(1)], T) },
      },
      { stateKey: this.stateKey, fetch: ['logits'] },
    );
    return r.outputs.logits.data as Float32Array;
  }

  /** Per-token log-probs and entropies of tokens[start..] under softmax(logits / temperature). */
  async score(
    seqs: readonly ScoredSequence[],
    opts: { temperature?: number; microBatch?: number } = {},
  ): Promise<TokenScores[]> {
    const g = await this.scoreGraph();
    const out: TokenScores[] = [];
    const mb = opts.microBatch ?? 16;
    for (let i = 0; i < seqs.length; i += mb) {
      const part = seqs.slice(i, i + mb);
      const { seq, feeds } = packSequences(part, this.tokenizer.padTokenId);
      const r = await g.run(
        { ...feeds, inv_temperature: 1 / (opts.temperature ?? 1) },
        { stateKey: this.stateKey, fetch: ['logp', 'entropy'] },
      );
      const lp = r.outputs.logp.data as Float32Array;
      const en = r.outputs.entropy.data as Float32Array;
      part.forEach((s, b) => {
        const from = b * seq + s.start - 1;
        const to = b * seq + s.tokens.length - 1;
        out.push({ logp: lp.slice(from, to), entropy: en.slice(from, to) });
      });
    }
    return out;
  }

  /** Builds the train step for LoRA (adapter factors trainable) or full fine-tuning (every weight). */
  async trainer(opts: TrainerOptions): Promise<ModelTrainer> {
    if (opts.mode === 'lora' && !this.lora) {
      throw new ModelError(
        'train_no_adapter',
        'mode',
        'LoRA training needs an adapter: load with { lora } or { adapterPath }',
      );
    }
    if (opts.mode === 'full' && this.lora) {
      throw new ModelError(
        'train_adapter_present',
        'mode',
        'merge the adapter first (mergeAdapter) or train in lora mode',
      );
    }
    // full fine-tuning of a tied model reads the head through the embedding from now on
    if (opts.mode === 'full') {
      this.fullTrained = true;
      // master weights are float32: fp16 weights are widened once (2× their bytes from here on)
      if (this.half.size > 0) {
        const w = await this.weights();
        this.half.clear();
        this.halfVersion++;
        await this.setWeights(w);
      }
    }
    return this.buildTrain(opts);
  }

  /** The train graph: forward, log-probs, the loss hook's loss and metrics (a fresh graph per call). */
  private trainGraph(opts: TrainerOptions) {
    const isParam = (name: string) =>
      opts.mode === 'lora' ? name.endsWith('.lora_A') || name.endsWith('.lora_B') : true;
    const frozen = this.familyOpts().role;
    const tied = this.config.tieWordEmbeddings;
    const s = scoreTensors(
      this.config,
      {
        ...this.familyOpts(),
        role: (n) => (isParam(n) ? 'param' : frozen(n)),
        headFromEmbedding: tied,
        loraDropout: this.lora?.config.dropout ?? 0,
      },
      'train',
    );
    const g = s.build.graph;
    const mask = g.input('mask', 'float32', ['batch', 'seq']);
    const extra: string[] = [];
    const { loss, metrics, metricWeights } = opts.loss({
      logp: s.logp,
      entropy: s.entropy,
      mask,
      logProbs: s.logProbs,
      input: (name, dtype, shape) => {
        extra.push(name);
        return g.input(name, dtype, shape);
      },
    });
    const params = g.inputs.filter((t) => t.kind === 'param');
    const dropoutSeed = g.inputs.some((t) => t.name === 'dropout_seed');
    return {
      g,
      loss,
      metrics: metrics ?? {},
      metricWeights: metricWeights ?? {},
      params,
      extra,
      dropoutSeed,
    };
  }

  private async buildTrain(opts: TrainerOptions): Promise<ModelTrainer> {
    const t = this.trainGraph(opts);
    const step = buildTrainStep({
      graph: t.g,
      loss: t.loss,
      params: t.params,
      optimizer: opts.optimizer,
      outputs: t.metrics,
    });
    const compiled = await this.engine.load(step.model);
    // moments start at zero, the step counter at 1
    const init: Record<string, Feed> = { 'optimizer.step': 1 };
    const shapes = weightShapes(this.config, this.familyOpts().lora);
    for (const p of t.params) {
      const dims = shapes.get(p.name)!;
      const size = dims.reduce((a, b) => a * b, 1);
      init[`${p.name}.m`] = { dims, data: new Float32Array(size) };
      init[`${p.name}.v`] = { dims, data: new Float32Array(size) };
    }
    await compiled.setState(this.stateKey, init);
    // Gradient accumulation (micro-batches) is built on first use: a second train graph whose
    // gradients add into zeroed <param>.grad buffers, and the AdamW step on their sum.
    const accumulating = async (): Promise<Accumulating> => {
      const a = this.trainGraph(opts);
      const weightOutputs = Object.fromEntries(
        Object.entries(a.metricWeights).map(([k, w]) => [`${k}${METRIC_WEIGHT}`, w]),
      );
      const built = buildAccumulatingTrainStep({
        graph: a.g,
        loss: a.loss,
        params: a.params,
        optimizer: opts.optimizer,
        outputs: { ...a.metrics, ...weightOutputs },
      });
      const [accumulate, apply] = await Promise.all([
        this.engine.load(built.accumulate.model),
        this.engine.load(built.apply.model),
      ]);
      const zeros: Record<string, Feed> = {};
      for (const b of built.buffers) {
        const dims = shapes.get(b.param)!;
        zeros[b.name] = { dims, data: new Float32Array(dims.reduce((x, y) => x * y, 1)) };
      }
      await apply.setState(this.stateKey, zeros);
      return {
        accumulate: { compiled: accumulate, bind: built.accumulate.bind, fetch: built.accumulate.fetch },
        apply: { compiled: apply, bind: built.apply.bind, fetch: built.apply.fetch },
      };
    };
    return new ModelTrainer(
      this,
      compiled,
      step.bind,
      step.fetch,
      t.extra,
      1 / (opts.temperature ?? 1),
      t.dropoutSeed,
      step.moments,
      accumulating,
    );
  }

  /** Saves the current adapter in PEFT format (adapter_config.json + adapter_model.safetensors). */
  async saveAdapter(dir: string, baseModel = this.dir): Promise<void> {
    if (!this.lora) throw new ModelError('adapter_none', 'adapter', 'this model has no LoRA adapter to save');
    saveAdapter(dir, this.config, this.lora.config, await this.weights(), baseModel);
  }

  /** Replaces the adapter (or adds one) from a PEFT folder. */
  async loadAdapter(dir: string): Promise<void> {
    if (this.fullTrained)
      throw new ModelError('adapter_after_full', 'adapter', 'cannot add an adapter after full fine-tuning');
    const a = loadAdapter(dir, this.config);
    this.lora = { config: a.config };
    await this.setWeights(a.weights);
  }

  /** Folds the adapter into the base weights (W += scale·A·B); the model then has no adapter. */
  async mergeAdapter(): Promise<void> {
    if (!this.lora) return;
    const w = await this.weights();
    const merged = mergeLora(this.config, w, this.lora.config, w);
    this.lora = null;
    await this.setWeights(merged);
  }

  /** Writes a full checkpoint folder (weights with any adapter merged, config and tokenizer files). */
  async saveCheckpoint(dir: string, opts: { dtype?: 'F32' | 'BF16' | 'F16' } = {}): Promise<void> {
    mkdirSync(dir, { recursive: true });
    let w = await this.weights();
    if (this.lora) w = mergeLora(this.config, w, this.lora.config, w);
    const tensors = toCheckpointTensors(w, this.config);
    const typed = Object.fromEntries(
      Object.entries(tensors).map(([k, t]) => [k, { ...t, dtype: opts.dtype ?? 'F32' }]),
    );
    writeSafetensors(join(dir, 'model.safetensors'), typed);
    for (const f of [
      'config.json',
      'generation_config.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'chat_template.jinja',
    ]) {
      if (existsSync(join(this.dir, f))) copyFileSync(join(this.dir, f), join(dir, f));
    }
    const cfg = readJson(join(dir, 'config.json'))!;
    cfg.torch_dtype = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' }[opts.dtype ?? 'F32'];
    writeFileSync(join(dir, 'config.json'), `${JSON.stringify(cfg, null, 2)}\n`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const g = await this.decodeGraph();
    await g.dropState(this.stateKey);
    if (this.ownsEngine) await this.engine.close();
  }
}

/** Suffix of the output that carries a metric's weight in the accumulating graph. */
const METRIC_WEIGHT = '.__weight';

interface Accumulating {
  accumulate: { compiled: CompiledModel; bind: Record<string, string>; fetch: string[] };
  apply: { compiled: CompiledModel; bind: Record<string, string>; fetch: string[] };
}

export interface StepOptions {
  /** Sequences per forward/backward pass (`micro_batch_size`): the mini-batch is split into
   *  ceil(n / microBatchSize) micro-batches whose gradients are summed, then ONE optimizer step
   *  runs on the sum. Null/absent or >= n: one packed pass. */
  microBatchSize?: number | null;
}

/** Rows [lo, hi) of the per-token feeds ([batch, seq] of the whole mini-batch), cut to `seq`
 *  columns (a micro-batch packs to its own longest sequence; right padding keeps position t at
 *  column t). Feeds of other shapes (scalars) pass unchanged. */
function microBatchFeeds(
  extra: Record<string, Feed>,
  batch: number,
  lo: number,
  hi: number,
  seq: number,
): Record<string, Feed> {
  const out: Record<string, Feed> = {};
  for (const [name, feed] of Object.entries(extra)) {
    if (typeof feed === 'number' || feed.dims[0] !== batch) {
      out[name] = feed;
      continue;
    }
    if (feed.dims.length !== 2 || feed.dims[1] < seq)
      throw new ModelError(
        'train_bad_input',
        name,
        `per-token inputs must be [batch, seq] with seq >= ${seq}, got [${feed.dims}]; build them for the whole mini-batch`,
      );
    const cols = feed.dims[1];
    const src = feed.data;
    const data = ArrayBuffer.isView(src)
      ? new (src.constructor as Float32ArrayConstructor)((hi - lo) * seq)
      : new Float32Array((hi - lo) * seq);
    for (let r = lo; r < hi; r++)
      for (let c = 0; c < seq; c++) data[(r - lo) * seq + c] = src[r * cols + c] as number;
    out[name] = { dims: [hi - lo, seq], data };
  }
  return out;
}

export class ModelTrainer {
  constructor(
    readonly model: CausalLM,
    private readonly compiled: CompiledModel,
    private readonly bind: Record<string, string>,
    private readonly fetch: string[],
    readonly extraInputs: string[],
    private readonly invTemperature: number,
    private readonly dropoutSeed: boolean,
    private readonly moments: string[],
    private readonly buildAccumulating: () => Promise<Accumulating>,
  ) {}
  private steps = 0;
  private accumulating: Promise<Accumulating> | null = null;

  /** AdamW moments and step counter, for checkpoints (the weights themselves: saveAdapter / saveCheckpoint). */
  async optimizerState(): Promise<Record<string, Float32Array>> {
    const tensors = await this.optimizerTensors();
    return Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, v.data]));
  }

  /** optimizerState() with each tensor's shape, as a checkpoint file stores it. */
  async optimizerTensors(): Promise<Record<string, { shape: number[]; data: Float32Array }>> {
    const st = await this.compiled.getState(this.model.stateKey, [...this.moments, 'optimizer.step']);
    const out: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [k, v] of Object.entries(st)) {
      out[k] = { shape: [...v.dims], data: Float32Array.from(v.data as ArrayLike<number>) };
    }
    return out;
  }

  /** Restores what optimizerState() returned (resuming a job from a checkpoint). */
  async restoreOptimizerState(state: Record<string, Float32Array>): Promise<void> {
    const values: Record<string, Feed> = {};
    for (const name of [...this.moments, 'optimizer.step']) {
      const data = state[name];
      if (!data)
        throw new ModelError('train_bad_optimizer_state', name, 'missing from the saved optimizer state');
      const spec = this.compiled.model.inputs.find((s) => s.name === name)!;
      const dims = spec.shape.map((d) => (typeof d === 'number' ? d : -1));
      if (dims.includes(-1) || dims.reduce((a, b) => a * b, 1) !== data.length) {
        throw new ModelError(
          'train_bad_optimizer_state',
          name,
          `${data.length} values do not fit [${spec.shape}]`,
        );
      }
      values[name] = { dims, data };
    }
    await this.compiled.setState(this.model.stateKey, values);
    this.steps = Math.round(state['optimizer.step'][0]) - 1;
  }

  /** One optimizer step on `seqs`; `extra` feeds the inputs the loss hook declared (per-token
   *  ones as [batch, seq] over ALL of `seqs`: their weights normalise over the whole mini-batch).
   *  With `microBatchSize` the gradients of the micro-batches are summed before the one step. */
  step(
    seqs: readonly ScoredSequence[],
    extra: Record<string, Feed> = {},
    opts: StepOptions = {},
  ): Promise<TrainStepResult> {
    const k = opts.microBatchSize ?? null;
    if (k !== null && !(Number.isInteger(k) && k >= 1))
      throw new ModelError('train_bad_micro_batch', 'micro_batch_size', `must be an integer >= 1, got ${k}`);
    return this.model.exclusive(() =>
      k === null || k >= seqs.length ? this.stepNow(seqs, extra) : this.accumulatedStep(seqs, extra, k),
    );
  }

  /** The optimizer step of a mini-batch that has no sequences: AdamW on a zero gradient (moments
   *  decay, momentum and weight decay still move the parameters, as torch.optim.AdamW does with
   *  zero gradients), so the step counter and the learning-rate schedule advance exactly once per
   *  planned mini-batch. */
  emptyStep(): Promise<TrainStepResult> {
    return this.model.exclusive(async () => {
      const acc = await this.accumulatingModels();
      this.steps += 1;
      return this.applyAccumulated(acc, 0, {}, 0);
    });
  }

  private accumulatingModels(): Promise<Accumulating> {
    this.accumulating ??= this.buildAccumulating();
    return this.accumulating;
  }

  private async accumulatedStep(
    seqs: readonly ScoredSequence[],
    extra: Record<string, Feed>,
    k: number,
  ): Promise<TrainStepResult> {
    this.checkExtra(extra);
    const acc = await this.accumulatingModels();
    this.steps += 1;
    let loss = 0;
    let ms = 0;
    const sums: Record<string, Float32Array> = {};
    const weights: Record<string, number> = {};
    for (let lo = 0, micro = 0; lo < seqs.length; lo += k, micro++) {
      const hi = Math.min(seqs.length, lo + k);
      const { feeds, mask, batch, seq } = packSequences(seqs.slice(lo, hi), this.model.tokenizer.padTokenId);
      const r = await acc.accumulate.compiled.run(
        {
          ...feeds,
          ...this.seedFeed(micro),
          mask: { dims: [batch, seq], data: mask },
          inv_temperature: this.invTemperature,
          ...microBatchFeeds(extra, seqs.length, lo, hi, seq),
        },
        { stateKey: this.model.stateKey, bind: acc.accumulate.bind, fetch: acc.accumulate.fetch },
      );
      ms += r.ms;
      loss += Number((r.outputs.loss.data as Float32Array)[0]);
      // metrics are additive over micro-batches (their weights are the whole batch's) unless the
      // hook gave a weight: then they are weighted means (Σ v·w / Σ w), like clip_frac and kl_mean
      for (const [name, v] of Object.entries(r.outputs)) {
        if (name === 'loss' || name.endsWith(METRIC_WEIGHT)) continue;
        const w = r.outputs[`${name}${METRIC_WEIGHT}`];
        const scale = w ? Number((w.data as Float32Array)[0]) : 1;
        if (w) weights[name] = (weights[name] ?? 0) + scale;
        const data = v.data as Float32Array;
        sums[name] ??= new Float32Array(data.length);
        const sum = sums[name];
        for (let i = 0; i < data.length; i++) sum[i] += data[i] * scale;
      }
    }
    for (const [name, w] of Object.entries(weights)) {
      const sum = sums[name];
      for (let i = 0; i < sum.length; i++) sum[i] = w > 0 ? sum[i] / w : 0;
    }
    return this.applyAccumulated(acc, loss, sums, ms);
  }

  private async applyAccumulated(
    acc: Accumulating,
    loss: number,
    metrics: Record<string, Float32Array>,
    ms: number,
  ): Promise<TrainStepResult> {
    const r = await acc.apply.compiled.run(
      {},
      { stateKey: this.model.stateKey, bind: acc.apply.bind, fetch: acc.apply.fetch },
    );
    const num = (k: string) => (r.outputs[k] ? Number((r.outputs[k].data as Float32Array)[0]) : null);
    return {
      loss,
      lr: num('optimizer.lr') ?? Number.NaN,
      gradNorm: num('optimizer.grad_norm'),
      metrics,
      ms: ms + r.ms,
    };
  }

  private checkExtra(extra: Record<string, Feed>): void {
    for (const name of this.extraInputs) {
      if (!(name in extra))
        throw new ModelError(
          'train_missing_input',
          name,
          'the loss hook declared this input; pass it in step(seqs, extra)',
        );
    }
  }

  /** LoRA dropout seed: the step count, distinct per micro-batch (micro 0 = the packed step's). */
  private seedFeed(micro = 0): Record<string, Feed> {
    return this.dropoutSeed
      ? { dropout_seed: { dims: [], data: BigInt64Array.of(BigInt(this.steps) + (BigInt(micro) << 32n)) } }
      : {};
  }

  private async stepNow(
    seqs: readonly ScoredSequence[],
    extra: Record<string, Feed>,
  ): Promise<TrainStepResult> {
    const { feeds, mask, batch, seq } = packSequences(seqs, this.model.tokenizer.padTokenId);
    this.checkExtra(extra);
    this.steps += 1;
    const seed = this.seedFeed();
    const r = await this.compiled.run(
      {
        ...feeds,
        ...seed,
        mask: { dims: [batch, seq], data: mask },
        inv_temperature: this.invTemperature,
        ...extra,
      },
      { stateKey: this.model.stateKey, bind: this.bind, fetch: this.fetch },
    );
    const num = (k: string) => (r.outputs[k] ? Number((r.outputs[k].data as Float32Array)[0]) : null);
    const metrics: Record<string, Float32Array> = {};
    for (const [k, v] of Object.entries(r.outputs)) {
      if (k !== 'loss' && !k.startsWith('optimizer.')) metrics[k] = v.data as Float32Array;
    }
    return {
      loss: num('loss') ?? Number.NaN,
      lr: num('optimizer.lr') ?? Number.NaN,
      gradNorm: num('optimizer.grad_norm'),
      metrics,
      ms: r.ms,
    };
  }
}
