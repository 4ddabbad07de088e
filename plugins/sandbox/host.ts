// Runs an uploaded plugin bundle inside QuickJS compiled to WebAssembly (quickjs-emscripten).
// Each sandbox instance has its own WASM module, so its own linear memory: no file system, network,
// env, process or timers exist in there, only the harness's `host` functions. One instance serves
// many calls (a batch is one entry into the VM); an instance that hits its time or memory limit is
// thrown away and a fresh one takes the remaining calls. Why QuickJS and not isolated-vm: see
// docs/plugins.md ("The sandbox") and bench/RESULTS.md.
import { createHash } from 'node:crypto';
import {
  type CriticInput,
  type CriticResult,
  CriticResultSchema,
  type FieldError,
  fieldErrorsFromZod,
  type PluginCapability,
  type PluginKind,
  type PluginManifest,
  PluginManifestSchema,
  type ShapingConfig,
  type VerifierInput,
  type VerifierResult,
  VerifierResultSchema,
} from '@cgrpo/contract';
import {
  newQuickJSWASMModule,
  newVariant,
  type QuickJSContext,
  type QuickJSHandle,
  type QuickJSRuntime,
  RELEASE_SYNC,
} from 'quickjs-emscripten';
import type { z } from 'zod';
import { checkShaping } from '../builtin/shaping/expression';
import { createIvmInstance, ivmAvailable } from './engine-ivm';
import { PluginError, type PluginFailureReason } from './errors';
import { HARNESS_SOURCE, NONFINITE_MARK, RESULT_TOO_LARGE } from './harness';
import { type BundleImport, bundleImports } from './imports';
import {
  type CallState,
  chatSignal,
  type HostHooks,
  LoadFailure,
  oldestRunningStart,
  type RunBounds,
  runArguments,
  type SandboxEngine,
  type SandboxInstance,
} from './instance';
import { type ChatRequest, ChatRequestSchema, ChatResultSchema, type LlmChat } from './llm';

/** Bounds the runner puts on every plugin, whatever its manifest asks for. */
export interface SandboxLimits {
  /** Upper bound on a manifest's limits.timeout_ms. */
  maxTimeoutMs: number;
  /** Upper bound on a manifest's limits.memory_mb. */
  maxMemoryMb: number;
  /** QuickJS stack per instance; deep recursion fails with `stack`. */
  stackKb: number;
  /** Critiques longer than this are cut, with a note saying so. */
  maxCritiqueChars: number;
  /** A result whose JSON is larger than this fails with `invalid_result`. */
  maxResultBytes: number;
  /** Log lines kept per batch; the rest are dropped with one note. */
  maxLogLinesPerBatch: number;
  /** llm.chat calls allowed per plugin call. */
  maxLlmCallsPerCall: number;
  /** Calls in flight at once inside one instance (matters for plugins that await llm.chat). */
  concurrency: number;
  /** Calls sent into the VM in one entry. */
  batchSize: number;
}

export const DEFAULT_SANDBOX_LIMITS: SandboxLimits = {
  maxTimeoutMs: 60_000,
  maxMemoryMb: 512,
  stackKb: 256,
  maxCritiqueChars: 8_000,
  maxResultBytes: 1 << 20,
  maxLogLinesPerBatch: 200,
  maxLlmCallsPerCall: 8,
  concurrency: 8,
  batchSize: 1024,
};

export interface PluginLogEntry {
  plugin: string;
  version: string;
  /** Index of the call in the batch that logged it. */
  call: number;
  level: 'info' | 'warn' | 'error';
  message: string;
}

export interface SandboxOptions {
  /** Capabilities the job grants this plugin (spec.<role>.grants). */
  grants?: readonly PluginCapability[];
  /** Serves ctx.llm.chat; required when `llm.chat` is requested and granted. */
  llm?: LlmChat;
  limits?: Partial<SandboxLimits>;
  onLog?: (entry: PluginLogEntry) => void;
  /**
   * Which engine runs the plugin: 'auto' (default; env CGRPO_SANDBOX_ENGINE overrides) picks
   * isolated-vm where it loads and Node runs with --no-node-snapshot, QuickJS otherwise.
   */
  engine?: 'auto' | SandboxEngine;
}

/** Why `auto` would not pick isolated-vm here (null when it would). */
export function ivmUnavailableReason(): string | null {
  const ivm = ivmAvailable();
  return ivm.ok ? null : ivm.reason;
}

/** The engine `requested` resolves to in this process (throws when isolated-vm is forced but unusable). */
export function resolveEngine(requested?: 'auto' | SandboxEngine): SandboxEngine {
  const wanted =
    requested ?? (process.env.CGRPO_SANDBOX_ENGINE as 'auto' | SandboxEngine | undefined) ?? 'auto';
  if (wanted === 'quickjs') return 'quickjs';
  if (wanted === 'isolated-vm') {
    const ivm = ivmAvailable();
    if (!ivm.ok) throw new Error(`the isolated-vm sandbox engine is not usable here: ${ivm.reason}`);
    return 'isolated-vm';
  }
  if (wanted !== 'auto')
    throw new Error(`unknown sandbox engine '${String(wanted)}': use auto, isolated-vm or quickjs`);
  // auto is QuickJS: its memory limit is a hard bound on the host (one WASM memory with a maximum),
  // it has no WebAssembly, and it cannot take the runner down; isolated-vm is faster but opt-in
  // (docs/plugins.md, "The sandbox", gives the measurements)
  return 'quickjs';
}

function createInstance(
  engine: SandboxEngine,
  bundle: string,
  hooks: HostHooks,
): Promise<{ instance: SandboxInstance; description: string }> {
  return engine === 'isolated-vm' ? createIvmInstance(bundle, hooks) : Instance.create(bundle, hooks);
}

export type PluginOutcome<T> = { ok: true; value: T } | { ok: false; error: PluginError };

/** What the bundle says about itself when loaded (checked against the manifest). */
export interface PluginDescription {
  kind: PluginKind;
  sdk_version: string;
  config_schema: Record<string, unknown>;
  shaping: ShapingConfig | null;
}

export function sha256Hex(bundle: string | Uint8Array): string {
  return createHash('sha256').update(bundle).digest('hex');
}

// ---- one QuickJS instance -----------------------------------------------------------------------

/** The slice of the WebAssembly API used here (lib ES2023 has no WebAssembly types). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
const { WebAssembly: Wasm } = globalThis as unknown as {
  WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number }) => WasmMemory };
};

const WASM_PAGE = 64 * 1024;
/** The release-sync build starts with 16 MB of linear memory. */
const WASM_INITIAL_PAGES = 256;
const WASM_OVERHEAD_BYTES = 16 * 1024 * 1024;

class Instance implements SandboxInstance {
  readonly engine = 'quickjs' as const;
  deadline = Number.POSITIVE_INFINITY;
  interrupted = false;
  /** Set when a call ran out of memory: the instance stops and is replaced. */
  poisoned = false;
  alive = true;
  /** Calls that failed while the instance's WASM memory was at its maximum. */
  memoryFailures = new Set<number>();
  /** Set when the WASM module threw into the host (a trap); the message says why. */
  crashed: string | null = null;
  calls: CallState[] = [];
  private pendingOps = 0;
  private wake: (() => void) | null = null;
  private readonly abort = new AbortController();

  private constructor(
    readonly rt: QuickJSRuntime,
    readonly vm: QuickJSContext,
    private readonly harness: QuickJSHandle,
    private readonly hooks: HostHooks,
    readonly memory: WasmMemory,
    private readonly maxMemoryBytes: number,
  ) {}

  static async create(
    bundle: string,
    hooks: HostHooks,
  ): Promise<{ instance: Instance; description: string }> {
    // QuickJS's own malloc limit does not count ArrayBuffer storage, so the WASM linear memory
    // itself is capped too: the limit plus room for QuickJS's code, static data and stack.
    const maxMemoryBytes = hooks.memoryBytes + WASM_OVERHEAD_BYTES;
    const memory = new Wasm.Memory({
      initial: WASM_INITIAL_PAGES,
      maximum: Math.ceil(maxMemoryBytes / WASM_PAGE),
    });
    const module = await newQuickJSWASMModule(newVariant(RELEASE_SYNC, { wasmMemory: memory as never }));
    const rt = module.newRuntime();
    rt.setMemoryLimit(hooks.memoryBytes);
    rt.setMaxStackSize(hooks.stackBytes);
    const vm = rt.newContext();
    let instance: Instance | undefined;
    rt.setInterruptHandler(() => instance?.shouldInterrupt() ?? false);
    const hostObject = vm.newObject();
    const harnessFactory = vm.evalCode(HARNESS_SOURCE, 'cgrpo-harness.js');
    const factory = vm.unwrapResult(harnessFactory);
    const harness = vm.unwrapResult(vm.callFunction(factory, vm.undefined, hostObject));
    factory.dispose();
    instance = new Instance(rt, vm, harness, hooks, memory, maxMemoryBytes);
    instance.installHost(hostObject);
    hostObject.dispose();
    try {
      const description = await instance.loadBundle(bundle);
      return { instance, description };
    } catch (error) {
      instance.dispose();
      throw error;
    }
  }

  private shouldInterrupt(): boolean {
    if (this.poisoned || Date.now() > this.deadline) {
      this.interrupted = true;
      return true;
    }
    return false;
  }

  /** Deadline of the oldest running call, or `timeoutMs` from now when none runs. */
  private refreshDeadline(): void {
    const oldest = oldestRunningStart(this.calls);
    this.deadline = (Number.isFinite(oldest) ? oldest : Date.now()) + this.hooks.timeoutMs;
  }

  private installHost(hostObject: QuickJSHandle): void {
    const { vm } = this;
    const define = (name: string, fn: (...args: QuickJSHandle[]) => QuickJSHandle | undefined) => {
      const handle = vm.newFunction(name, fn);
      vm.setProp(hostObject, name, handle);
      handle.dispose();
    };
    define('begin', (i) => {
      this.calls[vm.getNumber(i)] = { state: 'running', startedAt: Date.now() };
      this.refreshDeadline();
      return undefined;
    });
    define('end', (i, json) => {
      this.settleCall(vm.getNumber(i), { state: 'done', json: vm.getString(json) });
      return undefined;
    });
    define('fail', (i, json) => {
      const text = vm.getString(json);
      const call = vm.getNumber(i);
      if (text.includes('out of memory') || this.nearMemoryLimit()) {
        this.poisoned = true;
        this.memoryFailures.add(call);
      }
      this.settleCall(call, { state: 'failed', json: text });
      return undefined;
    });
    define('log', (i, level, message) => {
      this.hooks.log(vm.getNumber(i), vm.getString(level), vm.getString(message));
      return undefined;
    });
    define('chat', (i, request) => {
      const call = vm.getNumber(i);
      const deferred = vm.newPromise();
      const signal = chatSignal(this.calls, call, this.hooks, this.abort.signal);
      this.pendingOps += 1;
      this.hooks
        .chat(call, vm.getString(request), signal)
        .then(
          (answer) => {
            if (!this.alive) return;
            const handle = vm.newString(answer);
            deferred.resolve(handle);
            handle.dispose();
          },
          (error: unknown) => {
            if (!this.alive) return;
            const message = error instanceof Error ? error.message : String(error);
            const handle = vm.newError({ name: 'LlmChatError', message });
            deferred.reject(handle);
            handle.dispose();
          },
        )
        .finally(() => {
          this.pendingOps -= 1;
          this.wake?.();
        });
      return deferred.handle;
    });
  }

  /** Memory grows in steps up to its maximum; being close to it means an allocation was refused. */
  nearMemoryLimit(): boolean {
    return this.memory.buffer.byteLength >= this.maxMemoryBytes * 0.85;
  }

  private settleCall(call: number, state: CallState): void {
    if (this.calls[call]?.state === 'running') this.calls[call] = state;
    this.refreshDeadline();
  }

  private async loadBundle(bundle: string): Promise<string> {
    const { vm } = this;
    this.refreshDeadline();
    const evaluated = vm.evalCode(bundle, 'plugin.mjs', { type: 'module' });
    if (evaluated.error) throw new LoadFailure(this.describe(evaluated.error));
    let exports = evaluated.value;
    if (vm.typeof(exports) === 'object' && vm.getPromiseState(exports).type !== 'fulfilled') {
      // top-level await in the bundle: let it settle
      const settled = await this.settle(exports);
      if (settled.error) {
        exports.dispose();
        throw new LoadFailure(settled.error);
      }
      exports.dispose();
      exports = settled.value!;
    }
    const definition = vm.getProp(exports, 'default');
    exports.dispose();
    const setPlugin = vm.getProp(this.harness, 'setPlugin');
    this.refreshDeadline();
    const described = vm.callFunction(setPlugin, this.harness, definition);
    setPlugin.dispose();
    definition.dispose();
    if (described.error) throw new LoadFailure(this.describe(described.error));
    const text = vm.getString(described.value);
    described.value.dispose();
    return text;
  }

  /** Dumps a thrown QuickJS value to a one-line description and frees it. */
  describe(error: QuickJSHandle): string {
    if (this.interrupted && !this.poisoned) {
      error.dispose();
      return 'interrupted';
    }
    let dumped: unknown;
    try {
      dumped = this.vm.dump(error);
    } catch {
      dumped = 'an error that cannot be read';
    }
    error.dispose();
    if (dumped && typeof dumped === 'object' && 'message' in dumped) {
      const { name, message } = dumped as { name?: unknown; message?: unknown };
      return `${String(name ?? 'Error')}: ${String(message)}`.slice(0, 2000);
    }
    return `threw a non-Error value: ${JSON.stringify(dumped) ?? String(dumped)}`.slice(0, 2000);
  }

  /** Pumps the job queue until `promise` settles, the instance dies, or nothing can ever settle it. */
  private async settle(
    promise: QuickJSHandle,
  ): Promise<{ value?: QuickJSHandle; error?: string; stuck?: boolean; dead?: boolean }> {
    const { vm, rt } = this;
    for (;;) {
      this.refreshDeadline();
      const jobs = rt.executePendingJobs();
      if (jobs.error) {
        const description = this.describe(jobs.error);
        if (this.interrupted || this.poisoned) return { dead: true, error: description };
        // an error escaping a job is a bug in the plugin's own promise plumbing; keep pumping
      } else jobs.dispose();
      if (this.interrupted || this.poisoned) return { dead: true, error: 'interrupted' };
      const state = vm.getPromiseState(promise);
      if (state.type === 'fulfilled') return { value: state.value };
      if (state.type === 'rejected') return { error: this.describe(state.error) };
      if (this.pendingOps === 0) return { stuck: true, error: 'awaited a promise that can never settle' };
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = null;
    }
  }

  configure(configJson: string): string {
    const configure = this.vm.getProp(this.harness, 'configure');
    const arg = this.vm.newString(configJson);
    this.refreshDeadline();
    const result = this.vm.callFunction(configure, this.harness, arg);
    configure.dispose();
    arg.dispose();
    if (result.error) throw new LoadFailure(this.describe(result.error));
    const text = this.vm.getString(result.value);
    result.value.dispose();
    return text;
  }

  /**
   * Runs one batch. Afterwards `calls[i]` says what happened to each input; the returned flags say
   * whether the instance must be replaced and whether the batch could never finish.
   */
  async run(
    batchJson: string,
    size: number,
    bounds: RunBounds,
  ): Promise<{ dead: boolean; stuck: boolean; error?: string }> {
    const { vm } = this;
    this.calls = Array.from({ length: size }, () => ({ state: 'waiting' }) as CallState);
    this.memoryFailures.clear();
    const run = vm.getProp(this.harness, 'run');
    const [json, ...numbers] = runArguments(batchJson, bounds);
    const args = [vm.newString(json), ...numbers.map((n) => vm.newNumber(n))];
    this.refreshDeadline();
    let settled: Awaited<ReturnType<Instance['settle']>>;
    try {
      const started = vm.callFunction(run, this.harness, ...args);
      run.dispose();
      for (const arg of args) arg.dispose();
      if (started.error) {
        const error = this.describe(started.error);
        return { dead: true, stuck: false, error };
      }
      settled = await this.settle(started.value);
      started.value.dispose();
      settled.value?.dispose();
    } catch (error) {
      // The WASM module itself trapped (e.g. the native stack ran out under deep recursion): its state
      // can no longer be trusted, so the instance is dropped and the running call is blamed.
      this.crashed = error instanceof Error ? error.message : String(error);
      return { dead: true, stuck: false, error: this.crashed };
    }
    return {
      dead: Boolean(settled.dead) || this.poisoned || this.interrupted || this.nearMemoryLimit(),
      stuck: Boolean(settled.stuck),
      ...(settled.error ? { error: settled.error } : {}),
    };
  }

  /** Size of the instance's WASM linear memory: what it really costs the runner. */
  memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  dispose(): void {
    if (!this.alive) return;
    this.alive = false;
    this.abort.abort(new Error('the sandbox instance was disposed'));
    this.wake?.();
    // A trapped module is left to the garbage collector: freeing its half-unwound runtime would
    // only trip QuickJS's own assertions. Its WASM memory goes with the last reference.
    if (this.crashed) return;
    try {
      this.harness.dispose();
      this.vm.dispose();
      this.rt.dispose();
    } catch {
      // A runtime stopped mid-call may still hold handles; its WASM memory is dropped with it.
    }
  }
}

// ---- the plugin as the runner sees it ------------------------------------------------------------

function parseDescription(text: string): PluginDescription {
  const value = JSON.parse(text) as Partial<PluginDescription> | null;
  if (!value || typeof value.kind !== 'string') throw new Error('no kind');
  return {
    kind: value.kind,
    sdk_version: String(value.sdk_version ?? ''),
    config_schema: value.config_schema && typeof value.config_schema === 'object' ? value.config_schema : {},
    shaping: value.shaping ?? null,
  };
}

/**
 * Evaluates a bundle in a fresh sandbox and returns what it says about itself (kind, config JSON
 * Schema, shaping expression). `cgrpo plugins build` writes the manifest from this.
 */
export async function describeBundle(
  bundle: string,
  limits: { timeoutMs?: number; memoryMb?: number } = {},
): Promise<PluginDescription> {
  const hooks = {
    timeoutMs: limits.timeoutMs ?? 10_000,
    memoryBytes: (limits.memoryMb ?? 128) * 1024 * 1024,
    stackBytes: DEFAULT_SANDBOX_LIMITS.stackKb * 1024,
    log: () => {},
    chat: () => Promise.reject(new Error('no llm.chat while describing a bundle')),
  };
  let created: { instance: SandboxInstance; description: string };
  try {
    created = await createInstance(resolveEngine(), bundle, hooks);
  } catch (error) {
    throw new Error(`the bundle did not load in the sandbox: ${(error as Error).message}`);
  }
  created.instance.dispose();
  return parseDescription(created.description);
}

/**
 * A loaded, sandboxed plugin. Load with `SandboxedPlugin.load`, set the job's config with
 * `configure`, then call `verifyBatch` / `critiqueBatch` (one outcome per input, never a throw for a
 * misbehaving call) or read `shaping()`. `dispose()` frees its memory.
 */
export class SandboxedPlugin {
  private instance: SandboxInstance | null = null;
  private configJson = '{}';
  private configured = false;
  private logLines = 0;
  private llmCalls = new Map<number, number>();
  private llmFailures = new Map<number, string>();
  private capabilityDenied = new Set<number>();
  /** Instances created so far (1 + the ones that replaced a dead instance). */
  instancesCreated = 0;

  private constructor(
    readonly manifest: PluginManifest,
    readonly description: PluginDescription,
    private readonly bundle: string,
    private readonly limits: SandboxLimits,
    private readonly effective: { timeoutMs: number; memoryMb: number },
    private readonly options: SandboxOptions,
    instance: SandboxInstance,
    /** The engine this plugin runs in. */
    readonly engine: SandboxEngine,
  ) {
    this.instance = instance;
    this.instancesCreated = 1;
  }

  get id(): string {
    return `${this.manifest.name}@${this.manifest.version}`;
  }

  /** Effective limits: the manifest's, bounded by the runner's. */
  get effectiveLimits(): { timeoutMs: number; memoryMb: number } {
    return { ...this.effective };
  }

  static async load(
    bundle: string,
    manifestInput: unknown,
    options: SandboxOptions = {},
  ): Promise<SandboxedPlugin> {
    const parsed = PluginManifestSchema.safeParse(manifestInput);
    const named = manifestInput as { name?: unknown; version?: unknown } | null;
    const name = typeof named?.name === 'string' ? named.name : 'unknown';
    const version = typeof named?.version === 'string' ? named.version : '0.0.0';
    if (!parsed.success) {
      const fields = fieldErrorsFromZod(parsed.error, 'manifest');
      throw new PluginError(
        name,
        version,
        'manifest',
        `the manifest is invalid: ${fields.map((f) => `${f.path}: ${f.message}`).join('; ')}`,
        fields,
      );
    }
    const manifest = parsed.data;
    const fail = (reason: PluginFailureReason, detail: string, fields: FieldError[] = []) =>
      new PluginError(manifest.name, manifest.version, reason, detail, fields);
    const digest = sha256Hex(bundle);
    if (digest !== manifest.sha256) {
      throw fail(
        'integrity',
        `the bundle's sha256 is ${digest} but the manifest says ${manifest.sha256}; rebuild with \`cgrpo plugins build\` and publish again`,
      );
    }
    let imports: BundleImport[];
    try {
      imports = await bundleImports(bundle);
    } catch (error) {
      const text = (error as { errors?: { text: string }[] }).errors?.[0]?.text ?? String(error);
      throw fail('load', `the bundle is not valid JavaScript: ${text}; rebuild with \`cgrpo plugins build\``);
    }
    if (imports.length > 0) {
      const shown = imports
        .slice(0, 5)
        .map((i) => `${i.kind} '${i.specifier.slice(0, 200)}'`)
        .join(', ');
      throw fail(
        'load',
        `the bundle imports other modules (${shown}${imports.length > 5 ? ', …' : ''}); a plugin bundle must be self-contained: build it with \`cgrpo plugins build\`, which bundles the SDK and everything it uses`,
      );
    }
    const grants = new Set(options.grants ?? []);
    for (const capability of manifest.capabilities) {
      if (!grants.has(capability)) {
        throw fail(
          'capability',
          `the plugin requests the '${capability}' capability, which the job does not grant; add "grants": ["${capability}"] next to this plugin in the job spec if you trust it`,
          [{ path: 'grants', message: `must include '${capability}' for ${manifest.name}` }],
        );
      }
    }
    if (manifest.capabilities.includes('llm.chat') && !options.llm) {
      throw fail(
        'capability',
        "the plugin needs 'llm.chat' but this runner has no LLM endpoint configured for the job (set the job's llm endpoint)",
      );
    }
    const limits = { ...DEFAULT_SANDBOX_LIMITS, ...options.limits };
    const effective = {
      timeoutMs: Math.min(manifest.limits.timeout_ms, limits.maxTimeoutMs),
      memoryMb: Math.min(manifest.limits.memory_mb, limits.maxMemoryMb),
    };
    const holder: { plugin?: SandboxedPlugin } = {};
    let engine: SandboxEngine;
    try {
      engine = resolveEngine(options.engine);
    } catch (error) {
      throw fail('load', (error as Error).message);
    }
    const { instance, description } = await SandboxedPlugin.spawn(
      bundle,
      manifest,
      limits,
      effective,
      holder,
      engine,
    );
    let parsedDescription: PluginDescription;
    try {
      parsedDescription = parseDescription(description);
    } catch {
      instance.dispose();
      throw fail('load', 'the bundle described itself with something that is not JSON');
    }
    if (parsedDescription.kind !== manifest.kind) {
      instance.dispose();
      throw fail(
        'manifest',
        `the bundle is a ${parsedDescription.kind} but the manifest says ${manifest.kind}; rebuild with \`cgrpo plugins build\``,
      );
    }
    const plugin = new SandboxedPlugin(
      manifest,
      parsedDescription,
      bundle,
      limits,
      effective,
      options,
      instance,
      engine,
    );
    holder.plugin = plugin;
    return plugin;
  }

  private static async spawn(
    bundle: string,
    manifest: PluginManifest,
    limits: SandboxLimits,
    effective: { timeoutMs: number; memoryMb: number },
    holder: { plugin?: SandboxedPlugin },
    engine: SandboxEngine,
  ): Promise<{ instance: SandboxInstance; description: string }> {
    try {
      return await createInstance(engine, bundle, {
        timeoutMs: effective.timeoutMs,
        memoryBytes: effective.memoryMb * 1024 * 1024,
        stackBytes: limits.stackKb * 1024,
        log: (call, level, message) => holder.plugin?.onLog(call, level, message),
        chat: (call, request, signal) =>
          holder.plugin
            ? holder.plugin.onChat(call, request, signal)
            : Promise.reject(new Error('not ready')),
      });
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      if (detail === 'interrupted') {
        throw new PluginError(
          manifest.name,
          manifest.version,
          'timeout',
          `loading the bundle ran past ${effective.timeoutMs} ms`,
        );
      }
      const reason: PluginFailureReason = /out of memory/.test(detail) ? 'memory' : 'load';
      throw new PluginError(manifest.name, manifest.version, reason, `the bundle did not load: ${detail}`);
    }
  }

  private onLog(call: number, level: string, message: string): void {
    this.logLines += 1;
    const sink = this.options.onLog;
    if (!sink) return;
    const entry = { plugin: this.manifest.name, version: this.manifest.version, call };
    if (this.logLines === this.limits.maxLogLinesPerBatch + 1) {
      sink({
        ...entry,
        level: 'warn',
        message: `[cgrpo: more than ${this.limits.maxLogLinesPerBatch} log lines in this batch; the rest are dropped]`,
      });
    }
    if (this.logLines > this.limits.maxLogLinesPerBatch) return;
    sink({ ...entry, level: level === 'warn' || level === 'error' ? level : 'info', message });
  }

  private async onChat(call: number, requestJson: string, signal: AbortSignal): Promise<string> {
    const llm = this.options.llm;
    if (!this.manifest.capabilities.includes('llm.chat') || !llm) {
      this.capabilityDenied.add(call);
      throw new Error(
        'ctx.llm.chat needs the \'llm.chat\' capability: list it in plugin.json "capabilities", rebuild, and grant it in the job spec',
      );
    }
    const used = (this.llmCalls.get(call) ?? 0) + 1;
    this.llmCalls.set(call, used);
    if (used > this.limits.maxLlmCallsPerCall) {
      throw new Error(`at most ${this.limits.maxLlmCallsPerCall} llm.chat calls per plugin call`);
    }
    let request: ChatRequest;
    try {
      request = ChatRequestSchema.parse(JSON.parse(requestJson));
    } catch (error) {
      const detail =
        error instanceof Error && 'issues' in error
          ? fieldErrorsFromZod(error as z.ZodError)
              .map((f) => `${f.path}: ${f.message}`)
              .join('; ')
          : 'not JSON';
      throw new Error(`ctx.llm.chat: invalid request (${detail})`);
    }
    try {
      const result = ChatResultSchema.parse(await llm(request, signal));
      return JSON.stringify(result);
    } catch (error) {
      const detail = signal.aborted
        ? `no answer within the call's ${this.effective.timeoutMs} ms`
        : error instanceof Error
          ? error.message
          : String(error);
      this.llmFailures.set(call, detail);
      throw new Error(`ctx.llm.chat failed: ${detail}`);
    }
  }

  private async ensureInstance(): Promise<SandboxInstance> {
    if (this.instance?.alive) return this.instance;
    const holder = { plugin: this as SandboxedPlugin };
    const { instance } = await SandboxedPlugin.spawn(
      this.bundle,
      this.manifest,
      this.limits,
      this.effective,
      holder,
      this.engine,
    );
    this.instancesCreated += 1;
    this.instance = instance;
    if (this.configured) this.applyConfig(instance);
    return instance;
  }

  private applyConfig(instance: SandboxInstance): void {
    let text: string;
    try {
      text = instance.configure(this.configJson);
    } catch (error) {
      throw this.error('config', `the plugin's config check failed: ${(error as Error).message}`);
    }
    const result = JSON.parse(text) as { ok: boolean; issues?: { path?: unknown; message?: unknown }[] };
    if (!result.ok) {
      const fields = (Array.isArray(result.issues) ? result.issues : []).slice(0, 50).map((issue) => ({
        path: ['config', String(issue?.path ?? '')].filter(Boolean).join('.'),
        message: String(issue?.message ?? 'invalid'),
      }));
      throw this.error(
        'config',
        `the job's config does not match the plugin's schema: ${fields.map((f) => `${f.path}: ${f.message}`).join('; ')}`,
        fields,
      );
    }
  }

  private error(reason: PluginFailureReason, detail: string, fields: FieldError[] = []): PluginError {
    return new PluginError(this.manifest.name, this.manifest.version, reason, detail, fields);
  }

  /** Validates and stores the job's config for this plugin; throws PluginError(`config`) naming each field. */
  async configure(config: unknown): Promise<void> {
    let json: string;
    try {
      json = JSON.stringify(config ?? {});
    } catch {
      throw this.error('config', 'the config is not JSON-serializable');
    }
    this.configJson = json;
    const instance = await this.ensureInstance();
    this.applyConfig(instance);
    this.configured = true;
  }

  async verifyBatch(inputs: readonly VerifierInput[]): Promise<PluginOutcome<VerifierResult>[]> {
    this.expectKind('verifier');
    return this.runAll(inputs, (json) =>
      this.checkResult<VerifierResult>(json, fastVerifierResult, (v) => VerifierResultSchema.safeParse(v)),
    );
  }

  async critiqueBatch(inputs: readonly CriticInput[]): Promise<PluginOutcome<CriticResult>[]> {
    this.expectKind('critic');
    return this.runAll(inputs, (json) =>
      this.checkResult<CriticResult>(json, fastCriticResult, (v) => CriticResultSchema.safeParse(v)),
    );
  }

  /** One verifier call; throws the PluginError if it fails. */
  async verify(input: VerifierInput): Promise<VerifierResult> {
    const [outcome] = await this.verifyBatch([input]);
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  /** One critic call; throws the PluginError if it fails. */
  async critique(input: CriticInput): Promise<CriticResult> {
    const [outcome] = await this.critiqueBatch([input]);
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  /** A shaping plugin's expression with the job's params applied, checked like a builtin one. */
  shaping(config: { params?: Record<string, number> } = {}): ShapingConfig {
    this.expectKind('shaping');
    const declared = this.description.shaping;
    if (!declared || typeof declared.expression !== 'string') {
      throw this.error('load', 'the shaping plugin declares no expression');
    }
    const params = { ...declared.params, ...config.params };
    const checked = checkShaping(declared.expression, params);
    if (!checked.ok) {
      throw this.error('invalid_result', `shaping ${checked.problem.field}: ${checked.problem.message}`, [
        { path: checked.problem.field, message: checked.problem.message },
      ]);
    }
    return { expression: declared.expression, params };
  }

  /** Bytes of WASM linear memory the current instance holds (0 when none is loaded). */
  memoryBytes(): number {
    return this.instance?.alive ? this.instance.memoryBytes() : 0;
  }

  dispose(): void {
    this.instance?.dispose();
    this.instance = null;
  }

  private expectKind(kind: PluginKind): void {
    if (this.manifest.kind !== kind) {
      throw this.error('manifest', `this plugin is a ${this.manifest.kind}, not a ${kind}`);
    }
  }

  /** `fast` accepts the common well-formed result cheaply; zod explains anything else. */
  private checkResult<T>(
    json: string,
    fast: (value: unknown) => T | null,
    safeParse: (value: unknown) => z.ZodSafeParseResult<T>,
  ): PluginOutcome<T> {
    if (json.length > this.limits.maxResultBytes) {
      return {
        ok: false,
        error: this.error(
          'invalid_result',
          `the result is ${json.length} bytes of JSON, more than the ${this.limits.maxResultBytes} allowed`,
        ),
      };
    }
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch {
      return { ok: false, error: this.error('invalid_result', 'the result is not JSON') };
    }
    const quick = json.includes(NONFINITE_MARK) ? null : fast(value);
    if (quick) return { ok: true, value: quick };
    const nonFinite = findNonFinite(value, '');
    if (nonFinite) {
      return {
        ok: false,
        error: this.error(
          'invalid_result',
          `${nonFinite.path || 'result'}: must be a finite number, got ${nonFinite.value}`,
          [{ path: nonFinite.path, message: `must be a finite number, got ${nonFinite.value}` }],
        ),
      };
    }
    const parsed = safeParse(value);
    if (!parsed.success) {
      const fields = fieldErrorsFromZod(parsed.error);
      const shown = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
      return {
        ok: false,
        error: this.error(
          'invalid_result',
          `the plugin returned ${shown} that is not a valid ${this.manifest.kind} result: ${fields.map((f) => `${f.path || 'result'}: ${f.message}`).join('; ')}`,
          fields,
        ),
      };
    }
    return { ok: true, value: parsed.data };
  }

  private async runAll<T>(
    inputs: readonly unknown[],
    check: (json: string) => PluginOutcome<T>,
  ): Promise<PluginOutcome<T>[]> {
    if (!this.configured) await this.configure({});
    const outcomes: PluginOutcome<T>[] = new Array(inputs.length);
    for (let start = 0; start < inputs.length; start += this.limits.batchSize) {
      const indices = [];
      for (let i = start; i < Math.min(inputs.length, start + this.limits.batchSize); i++) indices.push(i);
      await this.runChunk(inputs, indices, outcomes, check);
    }
    return outcomes;
  }

  private async runChunk<T>(
    inputs: readonly unknown[],
    indices: number[],
    outcomes: PluginOutcome<T>[],
    check: (json: string) => PluginOutcome<T>,
  ): Promise<void> {
    const retried = new Set<number>();
    let pending = indices;
    while (pending.length > 0) {
      const instance = await this.ensureInstance();
      this.logLines = 0;
      this.llmCalls.clear();
      this.llmFailures.clear();
      this.capabilityDenied.clear();
      const batchJson = JSON.stringify(pending.map((i) => inputs[i]));
      const run = await instance.run(batchJson, pending.length, {
        concurrency: this.limits.concurrency,
        maxCritique: this.limits.maxCritiqueChars,
        maxResultChars: this.limits.maxResultBytes,
        maxLogLines: this.limits.maxLogLinesPerBatch + 1,
      });
      const now = Date.now();
      const next: number[] = [];
      let progressed = false;
      pending.forEach((index, local) => {
        const call = instance.calls[local];
        if (call.state === 'done') {
          outcomes[index] = check(call.json);
          progressed = true;
        } else if (call.state === 'failed') {
          outcomes[index] = {
            ok: false,
            error: instance.memoryFailures.has(local)
              ? this.error('memory', `call ${index} ran past the ${this.effective.memoryMb} MB memory limit`)
              : this.thrownError(local, index, call.json),
          };
          progressed = true;
        } else if (call.state === 'running') {
          const overdue = now - call.startedAt >= this.effective.timeoutMs;
          if (instance.crashed) {
            const reason: PluginFailureReason = /call stack|stack overflow/i.test(instance.crashed)
              ? 'stack'
              : /memory/i.test(instance.crashed)
                ? 'memory'
                : 'crashed';
            outcomes[index] = {
              ok: false,
              error: this.error(
                reason,
                reason === 'memory'
                  ? `call ${index} ran past the ${this.effective.memoryMb} MB memory limit (${instance.crashed}); the instance was replaced`
                  : `call ${index} crashed its sandbox (${instance.crashed}); the instance was replaced`,
              ),
            };
            progressed = true;
          } else if (run.stuck) {
            outcomes[index] = {
              ok: false,
              error: this.error(
                'never_settled',
                `call ${index} awaited a promise that can never settle (only ctx.llm.chat is asynchronous in the sandbox)`,
              ),
            };
            progressed = true;
          } else if (overdue || retried.has(index)) {
            outcomes[index] = {
              ok: false,
              error: overdue
                ? this.error('timeout', `call ${index} ran past the ${this.effective.timeoutMs} ms limit`)
                : this.error(
                    'crashed',
                    `call ${index} was running when its sandbox died twice: ${run.error ?? 'unknown'}`,
                  ),
            };
            progressed = true;
          } else {
            retried.add(index);
            next.push(index);
          }
        } else next.push(index);
      });
      if (run.dead || run.stuck) {
        instance.dispose();
        this.instance = null;
      }
      if (!run.dead && !run.stuck && next.length > 0 && !progressed) {
        // The harness returned without touching some calls: nothing more can be done for them.
        for (const index of next) {
          outcomes[index] = {
            ok: false,
            error: this.error('crashed', `call ${index} was never run: ${run.error ?? 'unknown'}`),
          };
        }
        return;
      }
      if (!progressed && next.length === pending.length && run.dead) {
        const reason: PluginFailureReason = /out of memory/.test(run.error ?? '') ? 'memory' : 'crashed';
        for (const index of next) {
          outcomes[index] = {
            ok: false,
            error: this.error(
              reason,
              `the sandbox died before call ${index} could start: ${run.error ?? 'unknown'}`,
            ),
          };
        }
        return;
      }
      pending = next;
    }
  }

  /** `local` is the call's index in the VM batch (host bookkeeping), `call` its index for the user. */
  private thrownError(local: number, call: number, json: string): PluginError {
    let thrown: { error?: boolean; name?: string; message?: string };
    try {
      thrown = JSON.parse(json);
    } catch {
      thrown = { message: 'threw something unreadable' };
    }
    const message = String(thrown.message ?? '');
    const shown = thrown.error ? `${thrown.name ?? 'Error'}: ${message}` : message;
    if (thrown.name === RESULT_TOO_LARGE) return this.error('invalid_result', `call ${call}: ${message}`);
    if (this.capabilityDenied.has(local)) return this.error('capability', `call ${call}: ${shown}`);
    if (this.llmFailures.has(local)) return this.error('llm', `call ${call}: ${shown}`);
    if (
      /out of memory|invalid array buffer length|invalid array length|invalid string length|array buffer allocation failed/i.test(
        message,
      )
    ) {
      return this.error(
        'memory',
        `call ${call} ran past the ${this.effective.memoryMb} MB memory limit (${shown})`,
      );
    }
    if (/stack overflow|call stack size/i.test(message)) {
      return this.error('stack', `call ${call} recursed too deep (${shown})`);
    }
    return this.error('threw', `call ${call} threw ${shown}`);
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** VerifierResultSchema's rules for the usual case, without zod's per-call cost. */
function fastVerifierResult(v: unknown): VerifierResult | null {
  if (!isRecord(v)) return null;
  const { score, correct, details } = v;
  if (typeof score !== 'number' || !(score >= 0 && score <= 1) || typeof correct !== 'boolean') return null;
  if (details !== undefined && !isRecord(details)) return null;
  return { score, correct, details: details ?? {} };
}

function fastCriticResult(v: unknown): CriticResult | null {
  return isRecord(v) && typeof v.critique === 'string' ? { critique: v.critique } : null;
}

function findNonFinite(value: unknown, path: string): { path: string; value: string } | null {
  if (typeof value === 'string' && value.startsWith(NONFINITE_MARK)) {
    return { path, value: value.slice(NONFINITE_MARK.length) };
  }
  if (value && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) {
      const found = findNonFinite(inner, path ? `${path}.${key}` : key);
      if (found) return found;
    }
  }
  return null;
}
