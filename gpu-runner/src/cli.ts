// `cgrpo-runner`: run jobs from a cgrpo API on this machine, or `cgrpo-runner register` to turn an
// account's registration key into a runner token.
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { RUNNER_TOKEN_PREFIX } from '@cgrpo/contract';
import type { SandboxEngine } from '@cgrpo/plugins/sandbox';
import { RunnerApi } from './api-client';
import { modelsCommand } from './hub/cli';
import type { PluginHostOptions } from './job/plugins';
import { type LogFormat, Logger } from './log';
import { Runner } from './runner';

export const RUNNER_VERSION = '0.1.0';
/** The models shipped with the runner (tiny test/demo checkpoints). */
export const BUNDLED_MODELS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'models');

const USAGE = `usage:
  cgrpo-runner --api URL --token cgrpo_rt_... [options]
  cgrpo-runner register --api URL --registration-key cgrpo_rk_... [--name NAME] [--labels k=v,...]
  cgrpo-runner models pull <org/name> [--revision R] | models list   (the Hugging Face cache)

options:
  --api URL             the cgrpo API (e.g. http://127.0.0.1:8787)
  --token TOKEN         runner token (or env CGRPO_RUNNER_TOKEN)
  --labels k=v,...      labels jobs can require (runner_labels)
  --device D            auto | cpu | cuda (default auto)
  --work-dir DIR        downloads, checkpoints and buffered reports (default ./.cgrpo-runner)
  --max-jobs N          jobs run at the same time (default 1)
  --models-dir DIR      extra folder of model checkpoints, repeatable
  --exit-after N        exit after N jobs (default: run until stopped)
  --lease-wait S        long-poll seconds per lease request (default 20)
  --threads N           onnxruntime intra-op threads per job (default: onnxruntime's choice, the
                        physical cores); same seed + same machine + same N = bit-identical results
  --outbox-mb N         disk a job's outbox may fill with rollouts and checkpoints while the API is
                        unreachable before training waits for it (default 4096)
  --log-format F        pretty | json (default pretty)
  --log-level L         debug | info | warn | error (default info)

published plugins (run in the plugin sandbox):
  --llm-endpoint URL    chat server for ctx.llm.chat when a job names none (or env
                        CGRPO_LLM_ENDPOINT; token from env CGRPO_LLM_TOKEN)
  --llm-model NAME      model name sent to that server (or env CGRPO_LLM_MODEL)
  --no-llm              take no job that grants llm.chat to a plugin
  --plugin-timeout-ms N upper bound on a plugin's per-call time limit (default 60000)
  --plugin-memory-mb N  upper bound on a plugin's memory limit (default 512)
  --sandbox-engine E    auto | isolated-vm | quickjs (default auto = QuickJS: its memory limit bounds
                        the runner; isolated-vm is faster, opt-in; docs/plugins.md, "The sandbox")`;

function splitList(v: string | undefined): string[] {
  return (v ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function positiveInt(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name}: must be a positive integer, got ${v}`);
  return n;
}

class UsageError extends Error {}

export async function main(argv: string[]): Promise<number> {
  try {
    if (argv[0] === 'register') return await register(argv.slice(1));
    if (argv[0] === 'models') return await modelsCommand(argv.slice(1));
    return await run(argv);
  } catch (e) {
    if (e instanceof UsageError || (e instanceof TypeError && 'code' in e)) {
      process.stderr.write(`cgrpo-runner: ${e.message}\n\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`cgrpo-runner: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

function logger(format: string | undefined, level: string | undefined): Logger {
  if (format !== undefined && format !== 'json' && format !== 'pretty') {
    throw new UsageError(`--log-format: must be json or pretty, got ${format}`);
  }
  if (level !== undefined && !['debug', 'info', 'warn', 'error'].includes(level)) {
    throw new UsageError(`--log-level: must be debug, info, warn or error, got ${level}`);
  }
  return new Logger({ format: (format ?? 'pretty') as LogFormat, level: (level ?? 'info') as 'info' });
}

async function register(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      api: { type: 'string' },
      'registration-key': { type: 'string' },
      name: { type: 'string' },
      labels: { type: 'string' },
      'log-format': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const key = values['registration-key'] ?? process.env.CGRPO_REGISTRATION_KEY;
  if (!values.api) throw new UsageError('--api is required');
  if (!key) throw new UsageError('--registration-key is required (or env CGRPO_REGISTRATION_KEY)');
  const log = logger(values['log-format'], undefined);
  const res = await RunnerApi.register(
    values.api,
    key,
    {
      name: values.name ?? hostname(),
      labels: splitList(values.labels),
      capabilities: ['cpu'],
      version: RUNNER_VERSION,
    },
    log,
  );
  process.stdout.write(`${JSON.stringify(res)}\n`);
  return 0;
}

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      api: { type: 'string' },
      token: { type: 'string' },
      labels: { type: 'string' },
      device: { type: 'string' },
      'work-dir': { type: 'string' },
      'max-jobs': { type: 'string' },
      'models-dir': { type: 'string', multiple: true },
      'exit-after': { type: 'string' },
      'lease-wait': { type: 'string' },
      threads: { type: 'string' },
      'outbox-mb': { type: 'string' },
      'log-format': { type: 'string' },
      'log-level': { type: 'string' },
      'llm-endpoint': { type: 'string' },
      'llm-model': { type: 'string' },
      'no-llm': { type: 'boolean' },
      'plugin-timeout-ms': { type: 'string' },
      'plugin-memory-mb': { type: 'string' },
      'sandbox-engine': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const token = values.token ?? process.env.CGRPO_RUNNER_TOKEN;
  if (!values.api) throw new UsageError('--api is required');
  if (!token) throw new UsageError('--token is required (or env CGRPO_RUNNER_TOKEN)');
  if (!token.startsWith(RUNNER_TOKEN_PREFIX)) {
    throw new UsageError(
      `--token: a runner token starts with ${RUNNER_TOKEN_PREFIX}; get one with cgrpo-runner register`,
    );
  }
  const device = values.device ?? 'auto';
  if (device !== 'auto' && device !== 'cpu' && device !== 'cuda') {
    throw new UsageError(`--device: must be auto, cpu or cuda, got ${device}`);
  }
  const log = logger(values['log-format'], values['log-level']);
  const llmEndpoint = values['llm-endpoint'] ?? process.env.CGRPO_LLM_ENDPOINT;
  if (llmEndpoint !== undefined && !/^https?:\/\/[^\s]+$/.test(llmEndpoint)) {
    throw new UsageError(`--llm-endpoint: must be an http(s) URL, got ${llmEndpoint}`);
  }
  const llmModel = values['llm-model'] ?? process.env.CGRPO_LLM_MODEL;
  const llmToken = process.env.CGRPO_LLM_TOKEN;
  const engineFlag = values['sandbox-engine'] ?? 'auto';
  if (!['auto', 'isolated-vm', 'quickjs'].includes(engineFlag)) {
    throw new UsageError(`--sandbox-engine: must be auto, isolated-vm or quickjs, got ${engineFlag}`);
  }
  const { resolveEngine, ivmUnavailableReason } = await import('@cgrpo/plugins/sandbox');
  let sandboxEngine: SandboxEngine;
  try {
    sandboxEngine = resolveEngine(engineFlag as 'auto' | SandboxEngine);
  } catch (e) {
    throw new UsageError(`--sandbox-engine: ${(e as Error).message}`);
  }
  log.debug('plugin sandbox', {
    engine: sandboxEngine,
    ...(sandboxEngine === 'quickjs' && engineFlag === 'isolated-vm' ? { why: ivmUnavailableReason() } : {}),
  });
  const host: PluginHostOptions = {
    sandboxEngine,
    llm: llmEndpoint
      ? {
          endpointUrl: llmEndpoint,
          ...(llmModel ? { model: llmModel } : {}),
          ...(llmToken ? { accessToken: llmToken } : {}),
        }
      : null,
    sandbox: {
      maxTimeoutMs: positiveInt('plugin-timeout-ms', values['plugin-timeout-ms'], 60_000),
      maxMemoryMb: positiveInt('plugin-memory-mb', values['plugin-memory-mb'], 512),
    },
  };
  const { executeJob } = await import('./job/executor');
  const runner = new Runner({
    api: values.api,
    token,
    labels: splitList(values.labels),
    // llm.chat: this runner lets plugins a job grants it call the job's chat endpoint
    capabilities: [
      ...(device === 'cuda' ? ['cpu', 'cuda'] : ['cpu']),
      ...(values['no-llm'] ? [] : ['llm.chat']),
    ],
    device,
    workDir: resolve(values['work-dir'] ?? '.cgrpo-runner'),
    maxJobs: positiveInt('max-jobs', values['max-jobs'], 1),
    ...(values.threads !== undefined ? { threads: positiveInt('threads', values.threads, 1) } : {}),
    outboxBudgetBytes: positiveInt('outbox-mb', values['outbox-mb'], 4096) * 1024 * 1024,
    modelDirs: [...(values['models-dir'] ?? []).map((d) => resolve(d)), BUNDLED_MODELS_DIR],
    exitAfterJobs:
      values['exit-after'] === undefined ? undefined : positiveInt('exit-after', values['exit-after'], 1),
    leaseWaitSeconds: values['lease-wait'] === undefined ? 20 : Number(values['lease-wait']),
    log,
    executor: (ctx) => executeJob(ctx, host),
  });
  let signals = 0;
  const onSignal = (sig: string) => {
    signals++;
    if (signals > 1) {
      log.warn('second signal: exiting now', { signal: sig });
      process.exit(130);
    }
    runner.requestShutdown();
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  await runner.run();
  return 0;
}
