// The V8-isolate engine (isolated-vm): each instance is its own isolate with its own heap, capped
// at the plugin's memory limit; nothing of Node exists in there, only the ECMAScript built-ins, the
// harness and two host callbacks (ctx.log and ctx.llm.chat). A batch runs on isolated-vm's thread
// pool, so the runner's event loop stays free: a watchdog on it disposes the isolate (which
// terminates the running script) once the oldest running call is past its time limit. Used when
// `isolated-vm` loads and Node was started with --no-node-snapshot (isolated-vm's requirement on
// Node >= 20); QuickJS otherwise.
import { createRequire } from 'node:module';
import type IvmModule from 'isolated-vm';
import { HARNESS_SOURCE } from './harness';
import {
  type CallState,
  chatSignal,
  type HostHooks,
  LoadFailure,
  oldestRunningStart,
  type RunBounds,
  runArguments,
  type SandboxInstance,
} from './instance';

type Ivm = typeof IvmModule;

let loaded: { ivm: Ivm } | { error: string } | null = null;

function snapshotDisabled(): boolean {
  return (
    process.execArgv.includes('--no-node-snapshot') ||
    /--no-node-snapshot/.test(process.env.NODE_OPTIONS ?? '')
  );
}

/** Whether this process can use the isolated-vm engine, and if not, why. */
export function ivmAvailable(): { ok: true } | { ok: false; reason: string } {
  if (!snapshotDisabled()) {
    return {
      ok: false,
      reason: 'node was started without --no-node-snapshot, which isolated-vm needs on Node >= 20',
    };
  }
  if (loaded === null) {
    try {
      loaded = { ivm: createRequire(import.meta.url)('isolated-vm') as Ivm };
    } catch (error) {
      loaded = { error: error instanceof Error ? error.message.split('\n')[0] : String(error) };
    }
  }
  return 'ivm' in loaded ? { ok: true } : { ok: false, reason: `isolated-vm does not load: ${loaded.error}` };
}

function ivmModule(): Ivm {
  const check = ivmAvailable();
  if (!check.ok || loaded === null || !('ivm' in loaded)) {
    throw new Error(check.ok ? 'isolated-vm is not loaded' : check.reason);
  }
  return loaded.ivm;
}

/** One line for an error thrown out of the isolate. */
function describe(error: unknown): string {
  if (error instanceof Error) {
    if (/timed out/i.test(error.message)) return 'interrupted';
    if (/memory limit/i.test(error.message)) return 'out of memory (the isolate ran past its memory limit)';
    return `${error.name}: ${error.message}`.slice(0, 2000);
  }
  return `threw a non-Error value: ${String(error)}`.slice(0, 2000);
}

/** Calls per batch whose progress the host can see (SandboxLimits.batchSize is far below). */
const PROGRESS_SLOTS = 65_536;
/** How often the watchdog looks at the running calls (ms). */
const WATCH_MS = 10;
/** How long a batch may sit with no call moving before the harness is asked whether it is stuck (ms). */
const PROBE_AFTER_MS = 50;
/** How long a run waits for isolated-vm's thread to leave an isolate the watchdog disposed (ms). */
const LEAVE_MS = 500;

class IvmInstance implements SandboxInstance {
  readonly engine = 'isolated-vm' as const;
  alive = true;
  crashed: string | null = null;
  calls: CallState[] = [];
  memoryFailures = new Set<number>();
  private interrupted = false;
  private lastActivity = 0;
  private chatsInFlight = 0;
  private readonly abort = new AbortController();
  // the harness's functions, fetched once while the isolate is idle: a *Sync call on a busy
  // isolate would block the runner's event loop (and with it the watchdog) until the isolate yields
  private readonly fns: Record<'setPlugin' | 'configure' | 'probe' | 'run', IvmModule.Reference<unknown>>;

  private constructor(
    private readonly isolate: IvmModule.Isolate,
    private readonly context: IvmModule.Context,
    private readonly harness: IvmModule.Reference<Record<string, unknown>>,
    private readonly settle: IvmModule.Reference<unknown>,
    private readonly hooks: HostHooks,
    private readonly progress: Int32Array,
  ) {
    const get = (name: string) => harness.getSync(name, { reference: true }) as IvmModule.Reference<unknown>;
    this.fns = {
      setPlugin: get('setPlugin'),
      configure: get('configure'),
      probe: get('probe'),
      run: get('run'),
    };
  }

  static async create(
    bundle: string,
    hooks: HostHooks,
  ): Promise<{ instance: SandboxInstance; description: string }> {
    const ivm = ivmModule();
    const memoryLimit = Math.max(8, Math.ceil(hooks.memoryBytes / (1024 * 1024)));
    const isolate = new ivm.Isolate({
      memoryLimit,
      onCatastrophicError: (message) => {
        // V8 lost control of this isolate: it is never used again (the runner should restart)
        process.emitWarning(`cgrpo sandbox: isolated-vm catastrophic error: ${message}`);
      },
    });
    const holder: { instance?: IvmInstance } = {};
    try {
      const context = isolate.createContextSync();
      const global = context.global;
      const on = (fn: (i: number, ...rest: string[]) => void) =>
        new ivm.Callback((i: number, ...rest: string[]) => holder.instance?.hostEvent(() => fn(i, ...rest)), {
          ignored: true,
        });
      // calls report progress through shared memory (no VM exit per call) and their results
      // through run()'s answer; only logs and llm.chat cross into the host while a batch runs
      const progress = new SharedArrayBuffer(PROGRESS_SLOTS * 4);
      global.setSync('__cgrpo_progress', new ivm.ExternalCopy(progress).copyInto({ release: true }));
      global.setSync(
        '__cgrpo_log',
        on((i, level, message) => hooks.log(i, level, message)),
      );
      // llm.chat is two one-way messages: the isolate asks (an ignored callback), the host answers
      // later by calling __cgrpo_settle in the isolate, so several chats can be in flight at once
      global.setSync(
        '__cgrpo_chat',
        on((i, id, request) => holder.instance?.chat(i, Number(id), request)),
      );
      context.evalSync(
        `const __cgrpo_pending = new Map();
        let __cgrpo_next = 0;
        globalThis.__cgrpo_settle = (id, ok, text) => {
          const p = __cgrpo_pending.get(id);
          if (!p) return;
          __cgrpo_pending.delete(id);
          if (ok) p.resolve(text);
          else { const e = new Error(text); e.name = 'LlmChatError'; p.reject(e); }
        };
        globalThis.__cgrpo_harness = (${HARNESS_SOURCE})({
          begin: () => {}, end: () => {}, fail: () => {}, log: __cgrpo_log,
          progress: new Int32Array(__cgrpo_progress),
          chat: ((ask) => (i, request) => new Promise((resolve, reject) => {
            const id = __cgrpo_next++;
            __cgrpo_pending.set(id, { resolve, reject });
            ask(i, id, request);
          }))(__cgrpo_chat),
        });
        for (const k of ['__cgrpo_progress', '__cgrpo_log', '__cgrpo_chat']) delete globalThis[k];`,
        { filename: 'cgrpo-harness.js' },
      );
      const harness = global.getSync('__cgrpo_harness', { reference: true }) as IvmModule.Reference<
        Record<string, unknown>
      >;
      const settle = global.getSync('__cgrpo_settle', { reference: true }) as IvmModule.Reference<unknown>;
      context.evalSync('delete globalThis.__cgrpo_harness; delete globalThis.__cgrpo_settle');
      const instance = new IvmInstance(isolate, context, harness, settle, hooks, new Int32Array(progress));
      holder.instance = instance;
      const description = await instance.loadBundle(bundle);
      return { instance, description };
    } catch (error) {
      try {
        if (!isolate.isDisposed) isolate.dispose();
      } catch {
        // died of its memory limit while loading: already gone
      }
      if (error instanceof LoadFailure) throw error;
      throw new LoadFailure(describe(error));
    }
  }

  private async loadBundle(bundle: string): Promise<string> {
    const timeout = this.hooks.timeoutMs;
    let module: IvmModule.Module;
    try {
      module = this.isolate.compileModuleSync(bundle, { filename: 'plugin.mjs' });
      module.instantiateSync(this.context, (specifier) => {
        throw new Error(
          `import of '${specifier}' is not allowed in the sandbox; bundle it with cgrpo plugins build`,
        );
      });
      await module.evaluate({ timeout });
    } catch (error) {
      throw new LoadFailure(describe(error));
    }
    const definition = module.namespace.getSync('default', {
      reference: true,
    }) as IvmModule.Reference<unknown>;
    const setPlugin = this.fns.setPlugin;
    try {
      return setPlugin.applySync(undefined, [definition.derefInto()], {
        timeout,
        result: { copy: true },
      }) as string;
    } catch (error) {
      throw new LoadFailure(describe(error));
    } finally {
      definition.release();
      module.release();
    }
  }

  private hostEvent(fn: () => void): void {
    if (!this.alive) return;
    this.lastActivity = Date.now();
    fn();
  }

  /** Folds the shared progress marks into `calls` (a call seen started gets its start time now). */
  private readProgress(now: number): void {
    for (let i = 0; i < this.calls.length && i < PROGRESS_SLOTS; i++) {
      const mark = Atomics.load(this.progress, i);
      const call = this.calls[i];
      if (mark === 1 && call.state === 'waiting') {
        this.calls[i] = { state: 'running', startedAt: now };
        this.lastActivity = now;
      } else if (mark === 2 && call.state === 'running') {
        // finished; its result comes back with the batch (or, if the isolate dies, it runs again)
        this.calls[i] = { state: 'waiting' };
        this.lastActivity = now;
      }
    }
  }

  private chat(i: number, id: number, request: string): void {
    const signal = chatSignal(this.calls, i, this.hooks, this.abort.signal);
    this.chatsInFlight += 1;
    this.hooks
      .chat(i, request, signal)
      .then(
        (answer) => [true, answer] as const,
        (error: unknown) => [false, error instanceof Error ? error.message : String(error)] as const,
      )
      .then(([ok, text]) => {
        this.chatsInFlight -= 1;
        this.lastActivity = Date.now();
        if (!this.alive || this.isolate.isDisposed) return;
        this.settle.apply(undefined, [id, ok, text], { arguments: { copy: true } }).catch(() => {});
      });
  }

  configure(configJson: string): string {
    try {
      return this.fns.configure.applySync(undefined, [configJson], {
        timeout: this.hooks.timeoutMs,
        arguments: { copy: true },
        result: { copy: true },
      }) as string;
    } catch (error) {
      throw new LoadFailure(describe(error));
    }
  }

  /** The calls the harness has begun and not finished, and the llm.chat answers they await. */
  private async probe(): Promise<{ inflight: number[]; chats: number } | null> {
    try {
      const text = (await this.fns.probe.apply(undefined, [], { result: { copy: true } })) as string;
      return JSON.parse(text) as { inflight: number[]; chats: number };
    } catch {
      return null;
    }
  }

  async run(
    batchJson: string,
    size: number,
    bounds: RunBounds,
  ): Promise<{ dead: boolean; stuck: boolean; error?: string }> {
    this.calls = Array.from({ length: size }, () => ({ state: 'waiting' }) as CallState);
    this.memoryFailures.clear();
    this.progress.fill(0, 0, Math.min(size, PROGRESS_SLOTS));
    this.lastActivity = Date.now();
    const run = this.fns.run;
    let finished = false;
    let stuck = false;
    let probing = false;
    const done = run
      .apply(undefined, runArguments(batchJson, bounds), {
        arguments: { copy: true },
        result: { promise: true, copy: true },
      })
      .then(
        (text: unknown) => ({ error: undefined as string | undefined, text: String(text) }),
        (error: unknown) => ({ error: describe(error), text: undefined }),
      );
    // the watchdog: a call past its time limit kills the isolate; a batch whose running calls all
    // wait on nothing the host will ever answer is reported as stuck
    const watchdog = new Promise<void>((resolve) => {
      const tick = () => {
        try {
          watch();
        } catch (error) {
          // nothing a plugin does may throw out of a timer (that ends the process): the isolate is
          // treated as dead and replaced
          this.interrupted = true;
          this.crashed ??= describe(error);
          this.disposeIsolate();
          resolve();
        }
      };
      const watch = () => {
        if (finished || !this.alive) return resolve();
        const now = Date.now();
        this.readProgress(now);
        if (now - oldestRunningStart(this.calls) > this.hooks.timeoutMs) {
          this.interrupted = true;
          // the isolate may have died of memory exhaustion a moment ago: disposing it again throws
          // "Isolate is already disposed", which in a timer would end the runner
          this.disposeIsolate();
          return resolve();
        }
        if (!probing && now - this.lastActivity > PROBE_AFTER_MS) {
          probing = true;
          void this.probe().then((p) => {
            probing = false;
            if (finished || !p) return;
            if (p.inflight.length > 0 && p.chats === 0 && this.chatsInFlight === 0) {
              stuck = true;
              finished = true;
              resolve();
            } else this.lastActivity = Date.now();
          });
        }
        setTimeout(tick, WATCH_MS);
      };
      setTimeout(tick, WATCH_MS);
    });
    const outcome = await Promise.race([
      done.then((r) => ({ ...r, from: 'run' as const })),
      watchdog.then(() => null),
    ]);
    finished = true;
    if (outcome?.from === 'run' && !outcome.error) {
      // each call's result comes back in the batch's answer (no host callback per call)
      const results = (outcome.text ?? '').split('\u0001');
      results.forEach((r, i) => {
        if (i >= size || r.length === 0) return;
        const json = r.slice(1);
        if (r[0] === '1') this.calls[i] = { state: 'done', json };
        else {
          if (/out of memory|memory limit/i.test(json)) this.memoryFailures.add(i);
          this.calls[i] = { state: 'failed', json };
        }
      });
      return { dead: false, stuck: false };
    }
    if (stuck) return { dead: false, stuck: true, error: 'awaited a promise that can never settle' };
    if (this.interrupted) {
      // let isolated-vm's thread leave the disposed isolate (it may be deep inside JSON.stringify)
      // before anything else happens: a process that exits while it is still in there segfaults
      // (the run's promise rejects as soon as the isolate is disposed, before the thread has left:
      // only time tells; V8 notices the termination at its next interrupt check)
      await done;
      await new Promise((r) => setTimeout(r, LEAVE_MS));
      return { dead: true, stuck: false, error: 'interrupted' };
    }
    const error = outcome?.error ?? (await done).error ?? 'the isolate died';
    if (/out of memory/.test(error)) {
      this.crashed = error;
      for (let i = 0; i < this.calls.length; i++)
        if (this.calls[i].state === 'running') this.memoryFailures.add(i);
    }
    return { dead: true, stuck: false, error };
  }

  memoryBytes(): number {
    try {
      if (this.isolate.isDisposed) return 0;
      const heap = this.isolate.getHeapStatisticsSync();
      return heap.total_heap_size + (heap.externally_allocated_size ?? 0);
    } catch {
      return 0;
    }
  }

  /** Disposes the isolate once, whatever state V8 left it in (never throws). */
  private disposeIsolate(): void {
    try {
      if (!this.isolate.isDisposed) this.isolate.dispose();
    } catch {
      // already disposed by isolated-vm itself (memory limit) between the check and the call
    }
  }

  dispose(): void {
    if (!this.alive) return;
    this.alive = false;
    this.abort.abort(new Error('the sandbox instance was disposed'));
    try {
      this.harness.release();
      this.context.release();
    } catch {
      // the isolate may already be gone
    }
    this.disposeIsolate();
  }
}

export function createIvmInstance(
  bundle: string,
  hooks: HostHooks,
): Promise<{ instance: SandboxInstance; description: string }> {
  return IvmInstance.create(bundle, hooks);
}
