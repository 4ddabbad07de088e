// The only code that touches onnxruntime-node. Plain JavaScript so it loads as a worker_threads
// worker without a TypeScript loader. It keeps a session cache keyed by model hash and, per
// state key, tensors that stay on this side between runs (weights, optimizer moments): outputs
// named in `bind` become the next run's inputs without ever crossing the thread boundary.
import { createRequire } from 'node:module';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';

// RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE (glibc's value; not in os.constants).
const PRELOAD_FLAGS = 2 | 256 | 0x1000;

/** Loads shared libraries by absolute path so later dlopen calls find them by soname.
 *  process.dlopen reports "did not self-register" for a non-addon library, but with
 *  RTLD_NODELETE the library stays mapped, which is all that is wanted here. */
export function preload(paths) {
  const errors = [];
  for (const p of paths) {
    try {
      process.dlopen({ exports: {} }, p, PRELOAD_FLAGS);
    } catch (error) {
      const message = String(error?.message ?? error);
      if (!message.includes('did not self-register')) errors.push(`${p}: ${message}`);
    }
  }
  return errors;
}

const GRAPH_OPT = { disabled: 'disabled', basic: 'basic', extended: 'extended', all: 'all' };

export class SessionHost {
  /** @param {{ ortPath?: string, executionProviders?: unknown[], threads?: number, graphOptimization?: string }} options */
  constructor(options = {}) {
    /** Libraries that failed to preload, with the loader's message. */
    this.preloadErrors = preload(options.preload ?? []);
    const require = createRequire(import.meta.url);
    this.ort = require(options.ortPath ?? 'onnxruntime-node');
    this.options = options;
    /** @type {Map<string, any>} */
    this.sessions = new Map();
    /** @type {Map<string, Record<string, any>>} */
    this.states = new Map();
  }

  version() {
    return this.ort.env?.versions?.common ?? 'unknown';
  }

  async load(hash, bytes) {
    let session = this.sessions.get(hash);
    if (!session) {
      const opts = {
        executionProviders: this.options.executionProviders ?? ['cpu'],
        graphOptimizationLevel: GRAPH_OPT[this.options.graphOptimization ?? 'all'] ?? 'all',
      };
      if (this.options.threads) opts.intraOpNumThreads = this.options.threads;
      session = await this.ort.InferenceSession.create(bytes, opts);
      this.sessions.set(hash, session);
    }
    return { inputNames: [...session.inputNames], outputNames: [...session.outputNames] };
  }

  has(hash) {
    return this.sessions.has(hash);
  }

  toOrt(value) {
    return new this.ort.Tensor(value.type, value.data, value.dims);
  }

  static fromOrt(t) {
    return { type: t.type, dims: [...t.dims], data: t.data };
  }

  setState(key, values) {
    const state = this.states.get(key) ?? {};
    for (const [name, v] of Object.entries(values)) state[name] = this.toOrt(v);
    this.states.set(key, state);
  }

  getState(key, names) {
    const state = this.states.get(key) ?? {};
    const out = {};
    for (const name of names ?? Object.keys(state))
      if (state[name]) out[name] = SessionHost.fromOrt(state[name]);
    return out;
  }

  dropState(key) {
    this.states.delete(key);
  }

  /**
   * @param {string} hash
   * @param {Record<string, {type: string, dims: number[], data: any}>} feeds
   * @param {{ fetch?: string[], stateKey?: string, baseStateKey?: string, bind?: Record<string, string>, repeat?: number }} options
   */
  async run(hash, feeds, options = {}) {
    const session = this.sessions.get(hash);
    if (!session) throw new Error(`engine.session: model ${hash.slice(0, 12)} is not loaded`);
    const state = options.stateKey ? (this.states.get(options.stateKey) ?? {}) : {};
    // Read-only fallback: e.g. shared weights for several generations, each with its own KV cache.
    const base = options.baseStateKey ? (this.states.get(options.baseStateKey) ?? {}) : {};
    const ortFeeds = {};
    for (const name of session.inputNames) {
      if (feeds[name]) ortFeeds[name] = this.toOrt(feeds[name]);
      else if (state[name]) ortFeeds[name] = state[name];
      else if (base[name]) ortFeeds[name] = base[name];
    }
    const repeat = options.repeat ?? 1;
    let outputs = {};
    const started = performance.now();
    for (let r = 0; r < repeat; r++) {
      outputs = await session.run(ortFeeds);
      if (options.bind) {
        for (const [out, input] of Object.entries(options.bind)) {
          state[input] = outputs[out];
          ortFeeds[input] = outputs[out];
        }
      }
    }
    const ms = performance.now() - started;
    if (options.stateKey) this.states.set(options.stateKey, state);
    const result = {};
    const bound = new Set(Object.keys(options.bind ?? {}));
    for (const name of options.fetch ?? Object.keys(outputs).filter((n) => !bound.has(n))) {
      if (!outputs[name]) throw new Error(`engine.fetch: the model has no output ${name}`);
      result[name] = SessionHost.fromOrt(outputs[name]);
    }
    return { outputs: result, ms };
  }

  async release(hash) {
    const session = this.sessions.get(hash);
    this.sessions.delete(hash);
    await session?.release();
  }
}

// Worker side: a tiny RPC over the parent port.
if (!isMainThread && workerData?.cgrpoSessionHost) {
  let host;
  try {
    host = new SessionHost(workerData.options);
  } catch (error) {
    parentPort.postMessage({ id: 0, error: String(error?.message ?? error) });
  }
  parentPort.on('message', async ({ id, method, args }) => {
    try {
      if (!host) throw new Error('engine.worker: onnxruntime failed to load');
      const result = await host[method](...args);
      parentPort.postMessage({ id, result });
    } catch (error) {
      parentPort.postMessage({ id, error: String(error?.message ?? error) });
    }
  });
  parentPort.postMessage({ id: 0, result: 'ready' });
}
