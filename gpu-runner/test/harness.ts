// End-to-end harness: the real API under `wrangler dev` (workerd, local D1/R2/Queues persisted in a
// temp folder, migrations applied with wrangler), real runner processes, real HTTP on loopback.
// Nothing is mocked.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const RUNNER_BIN = join(ROOT, 'gpu-runner', 'bin', 'cgrpo-runner.mjs');
export const DATASETS = join(ROOT, 'examples', 'datasets');

const OFFLINE_ENV = {
  WRANGLER_SEND_METRICS: 'false',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  WRANGLER_HIDE_BANNER: 'true',
  CI: 'true',
};

/** Node ≥ 22 runs wrangler; under `npx vitest` that is process.execPath (the project's node@22). */
function wranglerCommand(): { cmd: string; args: string[] } {
  const major = Number(process.versions.node.split('.')[0]);
  if (major >= 22)
    return { cmd: process.execPath, args: [join(ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js')] };
  return { cmd: 'npx', args: ['wrangler'] };
}

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false>,
  timeoutMs = 60_000,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface LocalApi {
  url: string;
  apiKey: string;
  registrationKey: string;
  stop(): Promise<void>;
  /** Stops the API process but keeps its state, so `restart` brings the same API back. */
  pause(): Promise<void>;
  restart(): Promise<void>;
  /** Runs the cron handler once (lease expiry → requeue). */
  cron(): Promise<void>;
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
}

export async function startApi(opts: { leaseSeconds?: number } = {}): Promise<LocalApi> {
  const state = mkdtempSync(join(tmpdir(), 'cgrpo-api-'));
  const w = wranglerCommand();
  const env = { ...process.env, ...OFFLINE_ENV };
  const migrate = spawnSync(
    w.cmd,
    [...w.args, 'd1', 'migrations', 'apply', 'DB', '--local', '--persist-to', state],
    {
      cwd: ROOT,
      env,
      encoding: 'utf8',
    },
  );
  if (migrate.status !== 0) throw new Error(`migrations failed: ${migrate.stderr}\n${migrate.stdout}`);
  const port = await freePort();
  const inspector = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let proc: ChildProcess | null = null;
  let log = '';
  const launch = async () => {
    log = '';
    proc = spawn(
      w.cmd,
      [
        ...w.args,
        'dev',
        '--ip',
        '127.0.0.1',
        '--port',
        String(port),
        '--inspector-port',
        String(inspector),
        '--persist-to',
        state,
        '--test-scheduled',
        '--var',
        `LEASE_SECONDS:${opts.leaseSeconds ?? 60}`,
      ],
      { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc.stdout?.on('data', (d) => {
      log += d;
    });
    proc.stderr?.on('data', (d) => {
      log += d;
    });
    await waitFor(
      `the API on ${url} (log: ${log.slice(-500)})`,
      // a bounded try: a workerd still starting may accept the connection and not answer yet
      async () => (await fetch(`${url}/v1/openapi.json`, { signal: AbortSignal.timeout(10_000) })).ok,
      180_000, // workerd starts in ~1 min on 2 busy cores
    );
  };
  const kill = async () => {
    const p = proc as ChildProcess | null;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (p.exitCode === null) p.kill('SIGKILL');
    proc = null;
  };
  await launch();
  const request = async <T>(method: string, path: string, body?: unknown, token?: string) => {
    const headers: Record<string, string> = {
      authorization: `Bearer ${token ?? api.apiKey}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      // a retried job submission must not create a second job
      ...(method === 'POST' && path === '/v1/jobs' ? { 'idempotency-key': randomUUID() } : {}),
    };
    let res: Response;
    for (let attempt = 1; ; attempt++) {
      try {
        res = await fetch(`${url}${path}`, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        break;
      } catch (e) {
        // a pooled keep-alive socket that workerd closed while the test was busy elsewhere fails
        // with "other side closed" before the request is read: send it again on a new one
        const code = (e as { cause?: { code?: string } }).cause?.code;
        if (attempt >= 3 || (code !== 'UND_ERR_SOCKET' && code !== 'ECONNRESET' && code !== 'EPIPE')) throw e;
      }
    }
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // binary or empty
    }
    return { status: res.status, body: parsed as T };
  };
  const api: LocalApi = {
    url,
    apiKey: '',
    registrationKey: '',
    stop: async () => {
      await kill();
      rmSync(state, { recursive: true, force: true });
    },
    pause: kill,
    restart: launch,
    cron: async () => {
      const res = await fetch(`${url}/cdn-cgi/handler/scheduled?cron=${encodeURIComponent('* * * * *')}`);
      if (!res.ok) throw new Error(`cron: ${res.status}`);
    },
    request: (m, p, b) => request(m, p, b),
  };
  const boot = await request<{ api_key: string; registration_key: string }>('POST', '/v1/bootstrap', {
    handle: 'e2e',
  });
  if (boot.status !== 201) throw new Error(`bootstrap: ${boot.status} ${JSON.stringify(boot.body)}`);
  api.apiKey = boot.body.api_key;
  api.registrationKey = boot.body.registration_key;
  return api;
}

/** Registers a runner through the CLI (`cgrpo-runner register`). */
export function registerRunner(
  api: LocalApi,
  name: string,
  labels: string[] = [],
): { token: string; runnerId: string } {
  const r = spawnSync(
    process.execPath,
    [
      RUNNER_BIN,
      'register',
      '--api',
      api.url,
      '--registration-key',
      api.registrationKey,
      '--name',
      name,
      ...(labels.length ? ['--labels', labels.join(',')] : []),
    ],
    { cwd: ROOT, encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`register failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim()) as { token: string; runner_id: string };
  return { token: out.token, runnerId: out.runner_id };
}

export interface RunnerProcess {
  proc: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
  /** Resolves when a log line matches. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
}

/** Every runner started in this process, so a failing test can show their logs. */
export const runners: RunnerProcess[] = [];

/** Stops every runner a test started (afterEach); a failed test first prints what they logged. */
export function stopRunners(showLogs: boolean): void {
  for (const r of runners.splice(0)) {
    if (showLogs) console.error(r.log().split('\n').slice(-40).join('\n'));
    if (r.proc.exitCode === null) r.proc.kill('SIGKILL');
  }
}

export function startRunner(
  api: LocalApi,
  token: string,
  opts: { labels?: string[]; workDir?: string; exitAfter?: number; extra?: string[]; threads?: number } = {},
): RunnerProcess {
  const workDir = opts.workDir ?? mkdtempSync(join(tmpdir(), 'cgrpo-runner-'));
  const proc = spawn(
    process.execPath,
    [
      '--no-node-snapshot',
      RUNNER_BIN,
      '--api',
      api.url,
      '--token',
      token,
      '--device',
      'cpu',
      '--work-dir',
      workDir,
      '--log-format',
      'json',
      '--lease-wait',
      '2',
      ...(opts.labels?.length ? ['--labels', opts.labels.join(',')] : []),
      ...(opts.exitAfter ? ['--exit-after', String(opts.exitAfter)] : []),
      ...(opts.threads ? ['--threads', String(opts.threads)] : []),
      ...(opts.extra ?? []),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: '1' } },
  );
  let out = '';
  proc.stdout?.on('data', (d) => {
    out += d;
  });
  proc.stderr?.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const runner: RunnerProcess = {
    proc,
    log: () => out,
    exited,
    waitForLog: (re, timeoutMs = 120_000) =>
      waitFor(`runner log ${re}`, async () => out.split('\n').find((l) => re.test(l)), timeoutMs, 100),
  };
  runners.push(runner);
  return runner;
}

/** A small Critique-GRPO job on the tiny Llama-shaped model and the arithmetic dataset. */
export function tinyJob(
  overrides: Record<string, unknown> = {},
  hp: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    name: 'e2e',
    algorithm: 'critique-grpo',
    model: { id: 'tiny-llama', adapter: { type: 'lora', rank: 4, alpha: 8 } },
    datasets: {
      // relative to the runner's working directory (ROOT): the API refuses absolute file: paths
      train: { uri: 'file:examples/datasets/arith-train.jsonl' },
      validation: { uri: 'file:examples/datasets/arith-val.jsonl', limit: 4 },
    },
    verifier: { plugin: 'builtin:math' },
    critic: { plugin: 'builtin:ground-truth' },
    seed: 7,
    checkpoint_every: 2,
    evaluation: { every_steps: 2, samples_per_prompt: 2, temperature: 1, max_prompts: 4 },
    hyperparameters: {
      prompts_per_step: 2,
      group_size: 3,
      max_response_tokens: 4,
      max_prompt_tokens: 64,
      learning_rate: 0.01,
      total_steps: 4,
      system_prompt: '',
      prompt_template: '{question} =',
      mini_batches_per_step: 1,
      ...hp,
    },
    ...overrides,
  };
}

/** A job as the e2e tests read it back. */
export interface JobView {
  id: string;
  status: string;
  runner_id: string | null;
  error: { code: string; message: string } | null;
}

/** POSTs a job spec and returns the new job's id (throws with the API's answer otherwise). */
export async function submitJob(api: LocalApi, spec: Record<string, unknown>): Promise<string> {
  const res = await api.request<{ id: string }>('POST', '/v1/jobs', spec);
  if (res.status !== 201) throw new Error(`POST /v1/jobs: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id;
}

/** Waits for a job to reach succeeded, failed or cancelled. */
export function jobFinished(api: LocalApi, id: string, timeoutMs = 200_000): Promise<JobView> {
  return waitFor(
    `job ${id} to finish`,
    async () => {
      const j = (await api.request<JobView>('GET', `/v1/jobs/${id}`)).body;
      return ['succeeded', 'failed', 'cancelled'].includes(j.status) ? j : null;
    },
    timeoutMs,
    500,
  );
}

/** A job's stored metric points, by step. */
export async function jobMetrics(api: LocalApi, id: string) {
  return (
    await api.request<{ data: { step: number; values: Record<string, number | null> }[] }>(
      'GET',
      `/v1/jobs/${id}/metrics`,
    )
  ).body.data;
}
