// The installable runner: `npm run build:runner` output, unpacked from its tarball into a folder
// that has never seen this repository, registered and run with plain Node against the real local
// API (wrangler dev). Its job names a Hub model id (`org/name` + revision), which the runner pulls
// from a loopback stand-in for the Hugging Face Hub into a fresh HF_HOME and trains end to end;
// `./cgrpo-runner setup-cuda --check` runs from the same folder (the bundled CUDA set-up script).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalApi, ROOT, startApi, tinyJob, waitFor } from './harness';
import { LoopbackHub } from './hub-server';

const COMMIT = 'b0b0000000000000000000000000000000000042';
let api: LocalApi;
let hub: LoopbackHub;
let proc: ChildProcess | null = null;

beforeAll(async () => {
  hub = new LoopbackHub({
    'cgrpo-test/tiny-llama': { dir: join(ROOT, 'gpu-runner', 'models', 'tiny-llama'), commit: COMMIT },
  });
  [api] = await Promise.all([startApi({ leaseSeconds: 20 }), hub.start()]);
}, 120_000);

afterAll(async () => {
  if (proc && proc.exitCode === null) proc.kill('SIGKILL');
  await Promise.all([api?.stop(), hub?.stop()]);
});

describe('the installable runner (npm run build:runner)', () => {
  it('builds, unpacks into an empty folder and trains a Hub model from there', async () => {
    // submitted first: it waits in the queue while the runner is built (and the API's keep-alive
    // connection from the set-up is still fresh)
    const spec = tinyJob(
      { name: 'bundle-hub', model: { id: 'cgrpo-test/tiny-llama', revision: 'main' }, checkpoint_every: 0 },
      { total_steps: 1 },
    );
    const res = await api.request<{ id: string }>('POST', '/v1/jobs', spec);
    expect(res.status, JSON.stringify(res.body)).toBe(201);

    const build = mkdtempSync(join(tmpdir(), 'cgrpo-build-'));
    const made = spawnSync(
      process.execPath,
      [join(ROOT, 'gpu-runner', 'scripts', 'build-runner.mjs'), '--out', join(build, 'cgrpo-runner')],
      {
        cwd: ROOT,
        encoding: 'utf8',
      },
    );
    expect(made.status, made.stderr).toBe(0);
    expect(made.stdout).toMatch(/cgrpo-runner\.tar\.gz \(\d+\.\d MiB\)/);

    // a machine without the repository: only the tarball's contents and a dataset folder
    const home = mkdtempSync(join(tmpdir(), 'cgrpo-install-'));
    expect(spawnSync('tar', ['xzf', join(build, 'cgrpo-runner.tar.gz'), '-C', home]).status).toBe(0);
    const dir = join(home, 'cgrpo-runner');
    expect(existsSync(join(dir, 'licenses', 'PACKAGES.txt'))).toBe(true);
    mkdirSync(join(home, 'examples'));
    cpSync(join(ROOT, 'examples', 'datasets'), join(home, 'examples', 'datasets'), { recursive: true });
    const hfHome = join(home, 'hf');
    const env = {
      PATH: process.env.PATH ?? '',
      HOME: home,
      HF_HOME: hfHome,
      HF_ENDPOINT: hub.url,
      OMP_NUM_THREADS: '1',
    };
    // `./cgrpo-runner setup-cuda --check`: the bundled set-up script (no TypeScript source in the
    // folder) runs the engine's detection; this machine has no CUDA provider, so it names the two
    // provider libraries beside the shipped onnxruntime-node and exits 1 without a stack trace.
    expect(existsSync(join(dir, 'lib', 'runner', 'setup-cuda.mjs'))).toBe(true);
    const check = spawnSync(join(dir, 'cgrpo-runner'), ['setup-cuda', '--check'], {
      cwd: home,
      encoding: 'utf8',
      env,
    });
    const checkOut = `${check.stdout}${check.stderr}`;
    expect(check.status, checkOut).toBe(1);
    expect(checkOut).toContain(
      'libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so not found beside onnxruntime-node',
    );
    expect(checkOut).toContain(join(dir, 'node_modules', 'onnxruntime-node', 'bin'));
    expect(checkOut).toContain('run `./cgrpo-runner setup-cuda`');
    expect(checkOut).not.toMatch(/\n\s+at /);
    expect(checkOut).not.toMatch(/\.ts\b/);
    const badRoute = spawnSync(join(dir, 'cgrpo-runner'), ['setup-cuda', '--route', 'pip'], {
      cwd: home,
      encoding: 'utf8',
      env,
    });
    expect(badRoute.status).toBe(1);
    expect(badRoute.stderr).toMatch(/^setup\.cuda\.route: --route must be nuget or npm, not pip\n/);

    // plain `node` from PATH (the project's tests run under node 22; the bundle targets >= 20)
    const reg = spawnSync(
      join(dir, 'cgrpo-runner'),
      ['register', '--api', api.url, '--registration-key', api.registrationKey, '--name', 'bundle'],
      {
        cwd: home,
        encoding: 'utf8',
        env,
      },
    );
    expect(reg.status, reg.stderr).toBe(0);
    const { token } = JSON.parse(reg.stdout.trim()) as { token: string };

    let log = '';
    proc = spawn(
      join(dir, 'cgrpo-runner'),
      [
        '--api',
        api.url,
        '--token',
        token,
        '--device',
        'cpu',
        '--work-dir',
        join(home, 'work'),
        '--log-format',
        'json',
        '--lease-wait',
        '2',
        '--exit-after',
        '1',
      ],
      { cwd: home, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc.stdout?.on('data', (d) => {
      log += d;
    });
    proc.stderr?.on('data', (d) => {
      log += d;
    });
    const exited = new Promise<number | null>((r) => proc?.once('exit', r));
    const job = await waitFor(
      'the job to finish',
      async () => {
        // a fresh connection per poll: the runner's build keeps this process busy for a minute
        const r = await fetch(`${api.url}/v1/jobs/${res.body.id}`, {
          headers: { authorization: `Bearer ${api.apiKey}`, connection: 'close' },
        });
        const j = (await r.json()) as { status: string; error: unknown };
        return ['succeeded', 'failed', 'cancelled'].includes(j.status) ? j : null;
      },
      150_000,
      500,
    ).catch((e: unknown) => {
      throw new Error(`${String(e)} (${String((e as { cause?: unknown }).cause)})\n${log.slice(-3000)}`);
    });
    expect(job.status, `${JSON.stringify(job.error)}\n${log.slice(-3000)}`).toBe('succeeded');
    expect(await exited).toBe(0);
    const snapshot = join(hfHome, 'hub', 'models--cgrpo-test--tiny-llama', 'snapshots', COMMIT);
    expect(log).toContain('"msg":"model ready"');
    expect(readFileSync(join(snapshot, 'config.json'), 'utf8')).toBe(
      readFileSync(join(ROOT, 'gpu-runner', 'models', 'tiny-llama', 'config.json'), 'utf8'),
    );
    expect(hub.resolves().length).toBeGreaterThan(0);

    // The npm route's target: a copy of onnxruntime-node in <folder>/.ort-cuda (here a stand-in
    // with a provider whose DT_NEEDED names a library no machine has). The bundled detection
    // finds it there by itself and names that library.
    const ort = join(dir, '.ort-cuda', 'node_modules', 'onnxruntime-node');
    const bin = join(ort, 'bin', 'napi-v6', process.platform, process.arch);
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(ort, 'package.json'), '{"name":"onnxruntime-node","version":"1.29.0"}');
    writeFileSync(join(bin, 'libonnxruntime_providers_shared.so'), 'stand-in');
    writeFileSync(join(bin, 'libonnxruntime_providers_cuda.so'), 'stand-in\0libcublasLt.so.99\0');
    const found = spawnSync(join(dir, 'cgrpo-runner'), ['setup-cuda', '--check'], {
      cwd: home,
      encoding: 'utf8',
      env,
    });
    expect(found.status, found.stderr).toBe(1);
    expect(found.stdout).toMatch(/^engine\.device\.cuda: libcublasLt\.so\.99(, [\w.]+)* not found/);
    expect(found.stdout).toContain('onnxruntime-node 1.29.0');
  }, 300_000);
});
