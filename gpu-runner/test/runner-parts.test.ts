// The runner's parts without the API: the outbox, the checkpoint archive, data order, the shaping
// compiler and the CLI's argument errors. The whole runner against the real API is in
// runner.e2e.test.ts; here a loopback HTTP server stands in for the API's two report routes so
// the test can see exactly what arrives, in what order, and switch it off and on.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { evaluateShaping, parseShapingExpression } from '@cgrpo/plugins/shaping';
import { afterEach, describe, expect, it } from 'vitest';
import { backoffDelay, DEFAULT_RETRY, RunnerApi } from '../src/api-client';
import { buildModel, createEngine, Graph } from '../src/engine';
import { compileShaping } from '../src/job/loss-graph';
import { createTar, readTar } from '../src/job/tar';
import { batchRows } from '../src/job/train';
import { Logger } from '../src/log';
import { metricName, metricValue, Reporter } from '../src/reporter';
import { freePort, ROOT, RUNNER_BIN } from './harness';

const quiet = new Logger({ write: () => {} });

interface Received {
  events: number[];
  steps: number[];
}

function reportServer(port: number, received: Received): Promise<Server> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      const parsed = JSON.parse(body) as { events?: { seq: number }[]; points?: { step: number }[] };
      if (req.url?.endsWith('/events')) received.events.push(...(parsed.events ?? []).map((e) => e.seq));
      if (req.url?.endsWith('/metrics')) received.steps.push(...(parsed.points ?? []).map((p) => p.step));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ accepted: 1, duplicates: 0 }));
    });
  });
  return new Promise((r) => server.listen(port, '127.0.0.1', () => r(server)));
}

let server: Server | null = null;
afterEach(() => {
  server?.close();
  server = null;
});

describe('reporter outbox', () => {
  it('keeps reports on disk while the API is down and delivers all of them, in order, when it returns', async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'cgrpo-outbox-'));
    const api = new RunnerApi({ baseUrl: `http://127.0.0.1:${port}`, token: 'cgrpo_rt_x', log: quiet });
    const opts = { api, jobId: 'job_1', leaseId: 'lease_1', attempt: 1, dir, log: quiet };
    const first = new Reporter(opts);
    first.event('job.progress', { step: 1 });
    first.metric(1, { 'reward/mean': 0.5, loss: Number.NaN });
    first.event('job.progress', { step: 2 });
    first.metric(2, { 'reward/mean': 0.25 });
    expect(await first.flush()).toBe(false); // nothing listens on the port
    expect(first.pending).toEqual({ events: 2, points: 2 });

    // a new process on the same work dir finds the outbox (seq continues after it)
    const second = new Reporter(opts);
    expect(second.pending).toEqual({ events: 2, points: 2 });
    second.event('job.progress', { step: 3 });
    const received: Received = { events: [], steps: [] };
    server = await reportServer(port, received);
    await second.drain(10_000);
    expect(received.events).toEqual([0, 1, 2]);
    expect(received.steps).toEqual([1, 2]);
    expect(second.pending).toEqual({ events: 0, points: 0 });
    expect(readdirSync(dir)).toContain('outbox-1.json');
  });

  it('stores NaN as null and spells @ the way the contract accepts', () => {
    expect(metricValue(Number.NaN)).toBeNull();
    expect(metricValue(Number.POSITIVE_INFINITY)).toBeNull();
    expect(metricValue(0.5)).toBe(0.5);
    expect(metricName('reward/mean')).toBe('reward/mean');
    expect(metricName('eval/pass@4')).toMatch(/^eval\/pass(@|_at_)4$/);
  });

  it('backs off exponentially with jitter, capped', () => {
    for (let attempt = 1; attempt <= 10; attempt++) {
      const cap = Math.min(DEFAULT_RETRY.maxDelayMs, DEFAULT_RETRY.baseDelayMs * 2 ** (attempt - 1));
      const d = backoffDelay(attempt, DEFAULT_RETRY);
      expect(d).toBeGreaterThanOrEqual(cap / 2);
      expect(d).toBeLessThanOrEqual(cap);
    }
  });
});

describe('checkpoint archive', () => {
  it('round-trips and is a tar the system tar reads', () => {
    const data = new Uint8Array(1300).map((_, i) => i % 251);
    const bytes = createTar([
      { name: 'adapter_config.json', data: new TextEncoder().encode('{"r": 4}') },
      { name: 'adapter_model.safetensors', data },
    ]);
    const back = readTar(bytes);
    expect(back.map((e) => e.name)).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(Array.from(back[1].data)).toEqual(Array.from(data));
    const dir = mkdtempSync(join(tmpdir(), 'cgrpo-tar-'));
    writeFileSync(join(dir, 'c.tar'), bytes);
    const list = spawnSync('tar', ['tf', join(dir, 'c.tar')], { encoding: 'utf8' });
    expect(list.status).toBe(0);
    expect(list.stdout.trim().split('\n')).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  });
});

describe('data order', () => {
  it('visits every row once per epoch, in a seeded order that repeats exactly', () => {
    const seen: number[] = [];
    for (let step = 1; step <= 5; step++) seen.push(...batchRows(step, 10, 2, 3, true).rows);
    expect([...seen].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(batchRows(6, 10, 2, 3, true).epoch).toBe(1);
    expect(batchRows(4, 10, 2, 3, true)).toEqual(batchRows(4, 10, 2, 3, true));
    expect(batchRows(1, 10, 2, 4, true).rows).not.toEqual(batchRows(1, 10, 2, 3, true).rows);
    expect(() => batchRows(1, 3, 4, 0, true)).toThrow(/prompts_per_step/);
  });
});

describe('shaping compiler', () => {
  it('computes the same f(p) in the training graph as the reference evaluator', async () => {
    const engine = await createEngine({ device: 'cpu', worker: false });
    try {
      for (const [src, params] of [
        ['p / (p + gamma)', { gamma: 0.1 }],
        ['clip(p, 0.2, 0.8) ^ 2 + min(p, a) - exp(-p) * log(p + 1)', { a: 0.3 }],
      ] as const) {
        const parsed = parseShapingExpression(src, Object.keys(params));
        if (!parsed.ok) throw new Error(parsed.message);
        const g = new Graph();
        const p = g.input('p', 'float32', ['n']);
        const compiled = await engine.load(buildModel(g, { f: compileShaping(parsed.ast, p, params) }));
        const ps = [0.01, 0.05, 0.1, 0.5, 0.9, 1];
        const out = await compiled.run({ p: { dims: [ps.length], data: Float32Array.from(ps) } });
        const f = Array.from(out.outputs.f.data as Float32Array);
        ps.forEach((v, i) => {
          expect(f[i], `${src} at p=${v}`).toBeCloseTo(evaluateShaping(parsed.ast, v, params).value, 5);
        });
      }
    } finally {
      await engine.close();
    }
  });
});

describe('cgrpo-runner CLI', () => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [RUNNER_BIN, ...args], { cwd: ROOT, encoding: 'utf8' });
  it('explains what is missing or wrong and exits 2', () => {
    const noToken = cli('--api', 'http://127.0.0.1:1');
    expect(noToken.status).toBe(2);
    expect(noToken.stderr).toMatch(/--token is required/);
    const badToken = cli('--api', 'http://127.0.0.1:1', '--token', 'cgrpo_sk_abc');
    expect(badToken.status).toBe(2);
    expect(badToken.stderr).toMatch(/starts with cgrpo_rt_/);
    const badDevice = cli('--api', 'http://127.0.0.1:1', '--token', 'cgrpo_rt_abc', '--device', 'tpu');
    expect(badDevice.status).toBe(2);
    expect(badDevice.stderr).toMatch(/--device: must be auto, cpu or cuda, got tpu/);
    const register = cli('register', '--api', 'http://127.0.0.1:1');
    expect(register.status).toBe(2);
    expect(register.stderr).toMatch(/--registration-key is required/);
  });
});
