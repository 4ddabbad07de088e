// What the sandbox host needs from one engine instance (QuickJS in WASM, or a V8 isolate through
// isolated-vm): load a bundle behind the harness, configure it, run a batch and say what happened
// to every call, and die cleanly.

export type SandboxEngine = 'quickjs' | 'isolated-vm';

export type CallState =
  | { state: 'waiting' }
  | { state: 'running'; startedAt: number }
  | { state: 'done'; json: string }
  | { state: 'failed'; json: string };

/** What the harness enforces inside the sandbox, before anything is copied into the host. */
export interface RunBounds {
  /** Calls in flight at once. */
  concurrency: number;
  /** Critiques are cut to this many characters (with a note). */
  maxCritique: number;
  /** A result whose JSON is longer fails with `invalid_result` without leaving the sandbox. */
  maxResultChars: number;
  /** Log lines passed to the host per batch; later ones are counted in the sandbox and dropped. */
  maxLogLines: number;
}

/** The harness's run() arguments, in order. */
export function runArguments(batchJson: string, b: RunBounds): [string, number, number, number, number] {
  return [batchJson, b.concurrency, b.maxCritique, b.maxResultChars, b.maxLogLines];
}

export interface HostHooks {
  timeoutMs: number;
  memoryBytes: number;
  stackBytes: number;
  log(call: number, level: string, message: string): void;
  chat(call: number, request: string, signal: AbortSignal): Promise<string>;
}

export interface SandboxInstance {
  readonly engine: SandboxEngine;
  /** False once disposed (or killed by a limit): a fresh instance takes the next calls. */
  readonly alive: boolean;
  /** Set when the engine itself failed under a call (trap, memory limit); the message says why. */
  crashed: string | null;
  /** What happened to each call of the last batch. */
  calls: CallState[];
  /** Calls of the last batch that failed because the instance ran out of memory. */
  memoryFailures: Set<number>;
  /** Runs the harness's config check; returns its JSON answer. Throws a LoadFailure. */
  configure(configJson: string): string;
  run(
    batchJson: string,
    size: number,
    bounds: RunBounds,
  ): Promise<{ dead: boolean; stuck: boolean; error?: string }>;
  /** Bytes the instance holds (WASM linear memory, or the isolate's heap). */
  memoryBytes(): number;
  dispose(): void;
}

/** When the oldest still-running call started (+Infinity when none runs): time limits count from it. */
export function oldestRunningStart(calls: readonly CallState[]): number {
  let oldest = Number.POSITIVE_INFINITY;
  for (const call of calls) if (call.state === 'running' && call.startedAt < oldest) oldest = call.startedAt;
  return oldest;
}

/**
 * The signal a call's llm.chat request runs under: aborted when the instance is disposed or when the
 * call's own time limit runs out.
 */
export function chatSignal(
  calls: readonly CallState[],
  call: number,
  hooks: HostHooks,
  dispose: AbortSignal,
): AbortSignal {
  const started = calls[call];
  const remaining =
    started?.state === 'running' ? started.startedAt + hooks.timeoutMs - Date.now() : hooks.timeoutMs;
  return AbortSignal.any([dispose, AbortSignal.timeout(Math.max(1, remaining))]);
}

/** A bundle or config check that failed inside the sandbox (message: `Name: message`, or `interrupted`). */
export class LoadFailure extends Error {}
