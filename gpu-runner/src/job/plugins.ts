// The job's verifier, critic and shaping. Built-ins of @cgrpo/plugins run natively in the runner;
// published plugins (`owner/name@version`) are downloaded by sha256 and run in the plugin sandbox
// (@cgrpo/plugins/sandbox), which never lets them reach the runner's files, network or env.
// A call that throws or times out gives a missing value with a reason, never NaN: the training loop
// leaves that sample out. A plugin that cannot load fails the job with `plugin_error` naming it.
import type {
  CriticInput,
  CriticResult,
  JobPluginUse,
  JobSpec,
  ResolvedPlugin,
  ShapingConfig,
  VerifierInput,
  VerifierResult,
} from '@cgrpo/contract';
import {
  type ChatMessage,
  type GenerateOptions,
  getBuiltinCritic,
  getBuiltinVerifier,
} from '@cgrpo/plugins/builtin';
import {
  type InferenceEndpoint,
  inferenceChat,
  PluginError,
  type PluginOutcome,
  type SandboxEngine,
  SandboxedPlugin,
  type SandboxLimits,
  sha256Hex,
} from '@cgrpo/plugins/sandbox';
import type { Logger } from '../log';
import { JobError } from './types';

export type Outcome<T> =
  | { ok: true; value: T; ms: number }
  /** `code` is set when the failure should name the job's error (`plugin_error` for sandboxed plugins). */
  | { ok: false; reason: string; ms: number; code?: string };
export type VerifyFn = (input: VerifierInput) => Promise<Outcome<VerifierResult>>;
export type CritiqueFn = (input: CriticInput) => Promise<Outcome<CriticResult>>;

export interface JobPlugins {
  verify: VerifyFn;
  /** null for grpo. */
  critique: CritiqueFn | null;
  /** A published shaping plugin's expression with the job's params; null = the spec's own shaping. */
  shaping: ShapingConfig | null;
  /** `role: owner/name@version (engine)` of every plugin running in the sandbox. */
  sandboxed: string[];
  /** Frees the sandboxes. */
  dispose(): void;
}

/** What the runner lends critics: the policy's own generation (builtin:self). */
export type PolicyGenerate = (messages: ChatMessage[], options: GenerateOptions) => Promise<string>;

/** Runner-wide plugin settings (command-line flags of cgrpo-runner). */
export interface PluginHostOptions {
  /** Serves ctx.llm.chat for jobs that grant llm.chat but name no `llm` endpoint of their own. */
  llm?: InferenceEndpoint | null;
  /** Bounds on every sandboxed plugin, whatever its manifest asks for. */
  sandbox?: Partial<SandboxLimits>;
  /** The sandbox engine (default auto: QuickJS; isolated-vm only when asked for). */
  sandboxEngine?: 'auto' | SandboxEngine;
}

export interface ResolveOptions extends PluginHostOptions {
  /** Downloads a bundle (the API's `/v1/runner/bundles/{sha256}`). */
  download?: (path: string) => Promise<Uint8Array>;
  /** The lease's resolved plugins (sha256, manifest, bundle URL of each published one). */
  resolved?: readonly ResolvedPlugin[];
  generate?: PolicyGenerate;
  /** Per-call bound for built-ins. */
  timeoutMs?: number;
  log?: Logger;
  env?: NodeJS.ProcessEnv;
  /** Receives plugin ctx.log lines, rate-limited, as `job.log` event data (the executor reports them). */
  onPluginLog?: (data: PluginLogEvent) => void;
}

/** The data of one `job.log` event: a plugin's ctx.log line. */
export interface PluginLogEvent {
  plugin: string;
  role: string;
  call: number;
  level: 'info' | 'warn' | 'error';
  message: string;
  /** Lines the rate limit dropped since the previous event. */
  dropped?: number;
}

/** Plugin log lines a job reports: a burst of this many, then this many per second. */
export const PLUGIN_LOG_BURST = 50;
export const PLUGIN_LOG_PER_SECOND = 5;
/** Characters of a line kept in its event. */
const PLUGIN_LOG_CHARS = 1000;

/**
 * A token bucket over one job's plugin log lines: lines past the rate are counted, and the next line
 * let through says how many were dropped. `now` is injectable for tests.
 */
export function pluginLogLimiter(
  emit: (data: PluginLogEvent) => void,
  now: () => number = Date.now,
): (data: PluginLogEvent) => void {
  let tokens = PLUGIN_LOG_BURST;
  let last = now();
  let dropped = 0;
  return (data) => {
    const t = now();
    tokens = Math.min(PLUGIN_LOG_BURST, tokens + ((t - last) / 1000) * PLUGIN_LOG_PER_SECOND);
    last = t;
    if (tokens < 1) {
      dropped += 1;
      return;
    }
    tokens -= 1;
    emit({
      ...data,
      message: data.message.slice(0, PLUGIN_LOG_CHARS),
      ...(dropped > 0 ? { dropped } : {}),
    });
    dropped = 0;
  };
}

function guarded<I, O>(
  fn: (input: I, signal: AbortSignal) => Promise<O>,
  timeoutMs: number,
): (input: I) => Promise<Outcome<O>> {
  return async (input) => {
    const t0 = performance.now();
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          abort.abort();
          reject(new Error(`timed out after ${timeoutMs} ms`));
        }, timeoutMs);
      });
      const value = await Promise.race([fn(input, abort.signal), timeout]);
      return { ok: true, value, ms: performance.now() - t0 };
    } catch (e) {
      return { ok: false, reason: e instanceof Error ? e.message : String(e), ms: performance.now() - t0 };
    } finally {
      clearTimeout(timer);
    }
  };
}

/** A plugin's field errors as `role.path: message; …`, the way a job failure names them. */
function fieldList(role: string, fields: readonly { path: string; message: string }[] | undefined): string {
  return (fields ?? []).map((f) => `${role}.${f.path}: ${f.message}`).join('; ');
}

/** Builds a built-in, turning its config errors into a job error that names the field. */
function build<T>(role: string, make: () => T): T {
  try {
    return make();
  } catch (e) {
    const err = e as Error & { code?: string; fields?: { path: string; message: string }[] };
    const fields = fieldList(role, err.fields);
    throw new JobError(
      err.code === 'unknown_plugin' ? 'plugin_unknown' : 'plugin_config_invalid',
      fields || `${role}: ${err.message}`,
    );
  }
}

/**
 * One sandbox entry per batch: the calls a training phase makes in the same tick (it awaits them
 * with Promise.all) go into the VM together, so 512 responses are one batch, not 512 entries.
 * Batches run one after another (a sandbox serves one batch at a time).
 */
function batched<I, O>(run: (inputs: I[]) => Promise<PluginOutcome<O>[]>): (input: I) => Promise<Outcome<O>> {
  let pending: { input: I; resolve: (o: Outcome<O>) => void }[] = [];
  let chain: Promise<void> = Promise.resolve();
  const flush = () => {
    const batch = pending;
    pending = [];
    chain = chain.then(async () => {
      const t0 = performance.now();
      let outs: PluginOutcome<O>[];
      try {
        outs = await run(batch.map((b) => b.input));
      } catch (e) {
        const ms = performance.now() - t0;
        const reason = e instanceof Error ? e.message : String(e);
        for (const b of batch) b.resolve({ ok: false, reason, ms, code: 'plugin_error' });
        return;
      }
      const ms = (performance.now() - t0) / batch.length;
      outs.forEach((o, i) => {
        batch[i].resolve(
          o.ok
            ? { ok: true, value: o.value, ms }
            : { ok: false, reason: o.error.message, ms, code: o.error.code },
        );
      });
    });
  };
  return (input) =>
    new Promise((resolve) => {
      if (pending.length === 0) setImmediate(flush);
      pending.push({ input, resolve });
    });
}

/** The endpoint that serves a plugin's ctx.llm.chat: the job's own, else the runner's default. */
function llmEndpoint(
  use: JobPluginUse,
  options: ResolveOptions,
): { endpoint: InferenceEndpoint | null; problem?: string } {
  const env = options.env ?? process.env;
  if (use.llm) {
    let accessToken: string | undefined;
    if (use.llm.token_env) {
      accessToken = env[use.llm.token_env];
      if (!accessToken)
        return {
          endpoint: null,
          problem: `llm.token_env: the runner has no environment variable ${use.llm.token_env}; set it where cgrpo-runner starts`,
        };
    }
    return {
      endpoint: {
        endpointUrl: use.llm.endpoint_url,
        ...(use.llm.model ? { model: use.llm.model } : {}),
        ...(accessToken ? { accessToken } : {}),
        maxTokens: use.llm.max_tokens,
      },
    };
  }
  return { endpoint: options.llm ?? null };
}

async function loadSandboxed(
  role: 'verifier' | 'critic' | 'shaping',
  use: JobPluginUse,
  options: ResolveOptions,
): Promise<SandboxedPlugin> {
  const resolved = options.resolved?.find((r) => r.role === role && r.ref === use.plugin);
  const fail = (code: string, message: string) =>
    new JobError(code, `${role}.plugin: ${use.plugin}: ${message}`);
  if (!resolved?.bundle_url || !resolved.manifest || !resolved.sha256) {
    throw fail(
      'plugin_unknown',
      'the API has no published bundle for this version; publish it with `cgrpo plugins publish`',
    );
  }
  if (!options.download)
    throw fail('plugin_error', 'this runner was started without a way to download bundles');
  let bytes: Uint8Array;
  try {
    bytes = await options.download(resolved.bundle_url);
  } catch (e) {
    throw new JobError(
      'plugin_download_failed',
      `${role}.plugin: ${use.plugin}: downloading the bundle failed: ${e instanceof Error ? e.message : String(e)}`,
      true,
    );
  }
  const digest = sha256Hex(bytes);
  if (digest !== resolved.sha256) {
    throw fail(
      'plugin_error',
      `integrity: the downloaded bundle's sha256 is ${digest}, the registry says ${resolved.sha256}`,
    );
  }
  const llm = use.grants.includes('llm.chat') ? llmEndpoint(use, options) : { endpoint: null };
  if (llm.problem) throw fail('plugin_error', llm.problem);
  const log = options.log?.child({ plugin: use.plugin, role });
  const jobLog = options.onPluginLog;
  try {
    const plugin = await SandboxedPlugin.load(new TextDecoder().decode(bytes), resolved.manifest, {
      grants: use.grants,
      ...(llm.endpoint ? { llm: inferenceChat(llm.endpoint) } : {}),
      ...(options.sandbox ? { limits: options.sandbox } : {}),
      ...(options.sandboxEngine ? { engine: options.sandboxEngine } : {}),
      onLog: (entry) => {
        jobLog?.({ plugin: use.plugin, role, call: entry.call, level: entry.level, message: entry.message });
        const fields = { call: entry.call };
        if (entry.level === 'error') log?.error(entry.message, fields);
        else if (entry.level === 'warn') log?.warn(entry.message, fields);
        else log?.info(entry.message, fields);
      },
    });
    if (role !== 'shaping') {
      try {
        await plugin.configure(use.config);
      } catch (e) {
        plugin.dispose();
        if (e instanceof PluginError && e.reason === 'config') {
          const fields = fieldList(role, e.fields);
          throw new JobError('plugin_config_invalid', `${use.plugin}: ${fields || e.detail}`);
        }
        throw e;
      }
    }
    return plugin;
  } catch (e) {
    if (e instanceof JobError) throw e;
    const message = e instanceof Error ? e.message : String(e);
    throw new JobError('plugin_error', `${role}.plugin: ${message}`);
  }
}

export async function resolvePlugins(spec: JobSpec, input: ResolveOptions = {}): Promise<JobPlugins> {
  // one rate limit for all of the job's plugins
  const options = input.onPluginLog ? { ...input, onPluginLog: pluginLogLimiter(input.onPluginLog) } : input;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const loaded: SandboxedPlugin[] = [];
  const dispose = () => {
    for (const p of loaded.splice(0)) p.dispose();
  };
  const sandboxed = async (role: 'verifier' | 'critic' | 'shaping', use: JobPluginUse) => {
    const plugin = await loadSandboxed(role, use, options);
    loaded.push(plugin);
    options.log?.info('plugin loaded in the sandbox', {
      role,
      plugin: plugin.id,
      engine: plugin.engine,
      ...plugin.effectiveLimits,
    });
    return plugin;
  };
  try {
    let verify: VerifyFn;
    if (spec.verifier.plugin.startsWith('builtin:')) {
      const verifier = build('verifier', () =>
        getBuiltinVerifier(spec.verifier.plugin, spec.verifier.config, { env: options.env ?? process.env }),
      );
      // an LLM judge (builtin:score-model, alone or in builtin:multi) has its own timeout and retries
      const judged =
        spec.verifier.plugin === 'builtin:score-model' || spec.verifier.plugin === 'builtin:multi';
      verify = guarded((input: VerifierInput) => verifier.verify(input), judged ? 15 * 60_000 : timeoutMs);
    } else {
      const plugin = await sandboxed('verifier', spec.verifier);
      verify = batched((inputs: VerifierInput[]) => plugin.verifyBatch(inputs));
    }

    let critique: CritiqueFn | null = null;
    if (spec.critic) {
      const use = spec.critic;
      if (use.plugin.startsWith('builtin:')) {
        if (use.plugin === 'builtin:llm' && !use.grants.includes('llm.chat')) {
          throw new JobError(
            'plugin_capability_not_granted',
            "critic.grants: builtin:llm calls an LLM endpoint; add 'llm.chat' to critic.grants",
          );
        }
        const critic = build('critic', () =>
          getBuiltinCritic(use.plugin, use.config, {
            env: options.env ?? process.env,
            ...(options.generate ? { generate: options.generate } : {}),
          }),
        );
        // LLM critics have their own timeout and retries (config.timeout_ms); this bound only stops a hang
        const critiqueTimeout =
          use.plugin === 'builtin:llm' || use.plugin === 'builtin:self' ? 15 * 60_000 : timeoutMs;
        critique = guarded(
          async (input: CriticInput, signal) => ({
            critique: (await critic.critique(input, { signal })).critique,
          }),
          critiqueTimeout,
        );
      } else {
        const plugin = await sandboxed('critic', use);
        critique = batched((inputs: CriticInput[]) => plugin.critiqueBatch(inputs));
      }
    }

    let shaping: ShapingConfig | null = null;
    if (spec.shaping && spec.shaping.plugin !== 'builtin:expression') {
      if (spec.shaping.plugin.startsWith('builtin:')) {
        throw new JobError(
          'plugin_unknown',
          `shaping.plugin: ${spec.shaping.plugin}: the built-in shaping is builtin:expression`,
        );
      }
      const use = spec.shaping;
      const plugin = await sandboxed('shaping', use);
      const unknown = Object.keys(use.config).filter((k) => k !== 'params');
      if (unknown.length) {
        throw new JobError(
          'plugin_config_invalid',
          unknown
            .map((k) => `shaping.config.${k}: unknown field (a shaping plugin takes only params)`)
            .join('; '),
        );
      }
      const params = (use.config as { params?: Record<string, number> }).params;
      try {
        shaping = plugin.shaping(params ? { params } : {});
      } catch (e) {
        throw new JobError('plugin_error', `shaping.plugin: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    return {
      verify,
      critique,
      shaping,
      sandboxed: loaded.map((p) => `${p.manifest.kind}: ${p.id}`),
      dispose,
    };
  } catch (e) {
    dispose();
    throw e;
  }
}
