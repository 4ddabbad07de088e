// Running built models: device selection, a session cache keyed by model hash, and execution
// inside a worker_threads worker (onnxruntime's run blocks its thread) or, on request, in-thread.
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import {
  cudaPreloadOrder,
  type Device,
  type DeviceRequest,
  hasVulkanLoader,
  probeCuda,
  pythonCudaLibraryDirs,
  pythonSitePackages,
  SETUP_CUDA_ORT,
} from './device';
import { allocate, type DType, type TypedArray, toTypedArray } from './dtype';
import { EngineError } from './graph';
import type { BuiltModel, ValueSpec } from './serialize';
import { type HostOptions, type RunOptions, SessionHost, type WireTensor } from './session-host.mjs';

export interface EngineOptions {
  device?: DeviceRequest;
  /** Run onnxruntime in a worker thread (default) so the caller's event loop keeps turning. */
  worker?: boolean;
  /** intra-op threads (default: onnxruntime's choice = physical cores). */
  threads?: number;
  graphOptimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** A different onnxruntime-node install (e.g. the 1.29 copy `npm run setup:cuda` makes). */
  ortPath?: string;
  /** Extra folders searched for CUDA libraries (besides LD_LIBRARY_PATH). */
  cudaLibraryPaths?: string[];
}

/** A tensor value on the caller's side. */
export interface TensorValue {
  dims: readonly number[];
  data: TypedArray;
}

export type Feed = TensorValue | { dims: readonly number[]; data: ArrayLike<number> } | number;

const ORT_TYPE: Record<DType, string> = {
  float32: 'float32',
  float64: 'float64',
  float16: 'float16',
  bfloat16: 'bfloat16',
  int64: 'int64',
  int32: 'int32',
  int8: 'int8',
  uint8: 'uint8',
  uint32: 'uint32',
  uint64: 'uint64',
  bool: 'bool',
};

interface Host {
  load(hash: string, bytes: Uint8Array): Promise<{ inputNames: string[]; outputNames: string[] }>;
  run(
    hash: string,
    feeds: Record<string, WireTensor>,
    options?: RunOptions,
  ): Promise<{ outputs: Record<string, WireTensor>; ms: number }>;
  /** `transfer`: move the values' buffers to the host instead of copying them (they are detached) */
  setState(key: string, values: Record<string, WireTensor>, transfer?: boolean): Promise<void>;
  getState(key: string, names?: string[]): Promise<Record<string, WireTensor>>;
  dropState(key: string): Promise<void>;
  release(hash: string): Promise<void>;
  close(): Promise<void>;
}

class InThreadHost implements Host {
  constructor(private readonly host: SessionHost) {}
  load = (hash: string, bytes: Uint8Array) => this.host.load(hash, bytes);
  run = (hash: string, feeds: Record<string, WireTensor>, options?: RunOptions) =>
    this.host.run(hash, feeds, options);
  setState = async (key: string, values: Record<string, WireTensor>) => this.host.setState(key, values);
  getState = async (key: string, names?: string[]) => this.host.getState(key, names);
  dropState = async (key: string) => this.host.dropState(key);
  release = (hash: string) => this.host.release(hash);
  close = async () => {};
}

class WorkerHost implements Host {
  private next = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private constructor(private readonly worker: Worker) {
    worker.on('message', ({ id, result, error }: { id: number; result?: unknown; error?: string }) => {
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      if (error !== undefined) p.reject(new EngineError('engine.run', error));
      else p.resolve(result);
    });
    worker.on('error', (e) => {
      for (const p of this.pending.values()) p.reject(new EngineError('engine.worker', e.message));
      this.pending.clear();
    });
  }
  static async start(options: HostOptions): Promise<WorkerHost> {
    const worker = new Worker(new URL('./session-host.mjs', import.meta.url), {
      workerData: { cgrpoSessionHost: true, options },
    });
    const host = new WorkerHost(worker);
    await new Promise<void>((resolve, reject) => {
      host.pending.set(0, { resolve: () => resolve(), reject });
    });
    worker.unref();
    return host;
  }
  private call<T>(method: string, ...args: unknown[]): Promise<T> {
    return this.callTransferring<T>(method, args, []);
  }
  private callTransferring<T>(method: string, args: unknown[], transfer: ArrayBuffer[]): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.ref();
      this.worker.postMessage({ id, method, args }, transfer);
    }).finally(() => {
      if (this.pending.size === 0) this.worker.unref();
    });
  }
  load = (hash: string, bytes: Uint8Array) =>
    this.call<{ inputNames: string[]; outputNames: string[] }>('load', hash, bytes);
  run = (hash: string, feeds: Record<string, WireTensor>, options?: RunOptions) =>
    this.call<{ outputs: Record<string, WireTensor>; ms: number }>('run', hash, feeds, options);
  setState = (key: string, values: Record<string, WireTensor>, transfer = false) => {
    // each buffer once (views may share one); a buffer that is not plain (shared) is copied
    const buffers = new Set<ArrayBuffer>();
    if (transfer) {
      for (const v of Object.values(values)) {
        const b = (v.data as { buffer?: unknown }).buffer;
        if (b instanceof ArrayBuffer) buffers.add(b);
      }
    }
    return this.callTransferring<void>('setState', [key, values], [...buffers]);
  };
  getState = (key: string, names?: string[]) => this.call<Record<string, WireTensor>>('getState', key, names);
  dropState = (key: string) => this.call<void>('dropState', key);
  release = (hash: string) => this.call<void>('release', hash);
  close = async () => {
    await this.worker.terminate();
  };
}

export interface DeviceSelection {
  device: Device;
  /** Why the device was chosen / what was missing for the others. */
  notes: string[];
  executionProviders: unknown[];
  /** The onnxruntime-node copy to load (the setup:cuda one when that is what has the provider). */
  ortPath?: string;
  /** CUDA libraries to load by absolute path before onnxruntime (see cudaPreloadOrder). */
  preload: string[];
}

/** Picks the execution provider. Explicit 'cuda'/'webgpu' fail with the missing library named;
 *  'auto' takes CUDA when it can load, WebGPU when a Vulkan loader exists, else CPU. */
export function selectDevice(options: EngineOptions = {}): DeviceSelection {
  const request = options.device ?? 'cpu';
  const notes: string[] = [];
  const ortPath = options.ortPath ?? process.env.CGRPO_ORT_PATH;
  if (request === 'cpu') return { device: 'cpu', notes, executionProviders: ['cpu'], ortPath, preload: [] };
  if (request === 'cuda' || request === 'auto') {
    const libraryPaths = [
      ...(options.cudaLibraryPaths ?? []),
      ...pythonSitePackages().flatMap(pythonCudaLibraryDirs),
    ];
    let probe = probeCuda({ ortPath, libraryPaths });
    let chosen = ortPath;
    if (!probe.ok && !ortPath && existsSync(SETUP_CUDA_ORT)) {
      // The npm route of setup:cuda installs a second onnxruntime-node (1.29) with the provider.
      [probe, chosen] = [probeCuda({ ortPath: SETUP_CUDA_ORT, libraryPaths }), SETUP_CUDA_ORT];
    }
    if (probe.ok)
      return {
        device: 'cuda',
        notes: [probe.message],
        executionProviders: [{ name: 'cuda' }, 'cpu'],
        ortPath: chosen,
        preload: cudaPreloadOrder(probe.found),
      };
    if (request === 'cuda')
      throw new EngineError('engine.device', probe.message.replace(/^engine\.device\.cuda: /, 'cuda: '));
    notes.push(probe.message);
  }
  if (request === 'webgpu' || request === 'auto') {
    if (hasVulkanLoader(options.cudaLibraryPaths))
      return { device: 'webgpu', notes, executionProviders: ['webgpu', 'cpu'], ortPath, preload: [] };
    const msg = 'webgpu: libvulkan.so.1 not found; the WebGPU provider (Dawn) needs a Vulkan driver on Linux';
    if (request === 'webgpu') throw new EngineError('engine.device', msg);
    notes.push(`engine.device.webgpu: ${msg}`);
  }
  return { device: 'cpu', notes, executionProviders: ['cpu'], ortPath, preload: [] };
}

/** Converts a feed to what onnxruntime takes, checking it against the declared input. */
function toWire(spec: ValueSpec, feed: Feed): WireTensor {
  const value = typeof feed === 'number' ? { dims: [] as number[], data: [feed] } : feed;
  if (value.dims.length !== spec.shape.length)
    throw new EngineError(
      'engine.feed',
      `${spec.name}: rank ${value.dims.length}, expected [${spec.shape.join(', ')}]`,
    );
  spec.shape.forEach((d, i) => {
    if (typeof d === 'number' && d !== value.dims[i])
      throw new EngineError('engine.feed', `${spec.name}: dim ${i} is ${value.dims[i]}, expected ${d}`);
  });
  const size = value.dims.reduce((a, b) => a * b, 1);
  if (value.data.length !== size)
    throw new EngineError(
      'engine.feed',
      `${spec.name}: ${value.data.length} values for dims [${value.dims.join(', ')}]`,
    );
  const sample = allocate(spec.dtype, 0);
  const data =
    value.data.constructor === sample.constructor
      ? (value.data as TypedArray)
      : toTypedArray(spec.dtype, value.data);
  return { type: ORT_TYPE[spec.dtype], dims: [...value.dims], data };
}

function fromWire(w: WireTensor): TensorValue {
  return { dims: w.dims, data: w.data as TypedArray };
}

export interface RunResult {
  outputs: Record<string, TensorValue>;
  /** Time inside onnxruntime (ms), without the thread hop. */
  ms: number;
}

/** A model loaded into a session (cached by hash on the engine). */
export class CompiledModel {
  constructor(
    private readonly host: Host,
    readonly model: BuiltModel,
  ) {}
  get hash(): string {
    return this.model.hash;
  }
  private wireFeeds(feeds: Record<string, Feed>): Record<string, WireTensor> {
    const wire: Record<string, WireTensor> = {};
    for (const [name, feed] of Object.entries(feeds)) {
      const spec = this.model.inputs.find((s) => s.name === name);
      if (!spec)
        throw new EngineError(
          'engine.feed',
          `${name}: the model has no such input (inputs: ${this.model.inputs.map((s) => s.name).join(', ')})`,
        );
      wire[name] = toWire(spec, feed);
    }
    return wire;
  }
  /** Runs once. Inputs not in `feeds` are taken from the state `stateKey` (see setState);
   *  `bind` maps outputs to the inputs they replace in that state after the run. */
  async run(feeds: Record<string, Feed>, options: RunOptions = {}): Promise<RunResult> {
    const { outputs, ms } = await this.host.run(this.model.hash, this.wireFeeds(feeds), options);
    return { outputs: Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, fromWire(v)])), ms };
  }
  /** Puts values into the runtime-side state `key` (kept on the worker between runs). */
  async setState(
    key: string,
    values: Record<string, Feed>,
    opts: { transfer?: boolean } = {},
  ): Promise<void> {
    await this.host.setState(key, this.wireFeeds(values), opts.transfer);
  }
  async getState(key: string, names?: string[]): Promise<Record<string, TensorValue>> {
    const out = await this.host.getState(key, names);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, fromWire(v)]));
  }
  async dropState(key: string): Promise<void> {
    await this.host.dropState(key);
  }
}

export class Engine {
  private readonly compiled = new Map<string, Promise<CompiledModel>>();
  private constructor(
    private readonly host: Host,
    readonly device: Device,
    readonly notes: string[],
  ) {}

  static async create(options: EngineOptions = {}): Promise<Engine> {
    const selection = selectDevice(options);
    const hostOptions: HostOptions = {
      ortPath: selection.ortPath,
      preload: selection.preload,
      executionProviders: selection.executionProviders,
      threads: options.threads,
      graphOptimization: options.graphOptimization ?? 'all',
    };
    const host: Host =
      options.worker === false
        ? new InThreadHost(new SessionHost(hostOptions))
        : await WorkerHost.start(hostOptions);
    return new Engine(host, selection.device, selection.notes);
  }

  /** Loads a built model; the same bytes (same hash) reuse the same session. */
  load(model: BuiltModel): Promise<CompiledModel> {
    let p = this.compiled.get(model.hash);
    if (!p) {
      p = this.host.load(model.hash, model.bytes).then(() => new CompiledModel(this.host, model));
      p.catch(() => this.compiled.delete(model.hash));
      this.compiled.set(model.hash, p);
    }
    return p;
  }

  get cachedSessions(): number {
    return this.compiled.size;
  }

  async close(): Promise<void> {
    await this.host.close();
  }
}

export function createEngine(options: EngineOptions = {}): Promise<Engine> {
  return Engine.create(options);
}
