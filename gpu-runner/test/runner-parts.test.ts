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
  /** Everything in arrival order: `event:<seq>`, `metric:<step>`, `rollouts:<step>`, `checkpoint:<step>`. */
  order?: string[];
}

/** The API's report routes on loopback: events, metrics, rollouts and multipart checkpoints. */
function reportServer(port: number, received: Received): Promise<Server> {
  received.order ??= [];
  const order = received.order;
  const checkpointSteps = new Map<string, number>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const url = req.url ?? '';
      const reply = (body: unknown) => {
        res.writeHead(url.includes('/checkpoints') && url.endsWith('/checkpoints') ? 201 : 200, {
          'content-type': 'application/json',
        });
        res.end(JSON.stringify(body));
      };
      if (url.includes('/rollouts/')) {
        order.push(`rollouts:${url.split('/').at(-1)}`);
        return reply({ step: Number(url.split('/').at(-1)), size: Buffer.concat(chunks).length });
      }
      if (url.includes('/parts/')) return reply({ part_number: Number(url.split('/').at(-1)), etag: 'e' });
      const parsed = JSON.parse(Buffer.concat(chunks).toString() || '{}') as {
        events?: { seq: number }[];
        points?: { step: number }[];
        step?: number;
        size?: number;
        sha256?: string;
      };
      if (url.endsWith('/checkpoints')) {
        const id = `ckpt_${checkpointSteps.size + 1}`;
        checkpointSteps.set(id, parsed.step ?? -1);
        return reply({ checkpoint_id: id, part_url: `${url}/${id}/parts/{part_number}`, min_part_size: 5 });
      }
      if (url.endsWith('/complete')) {
        const id = url.split('/').at(-2) ?? '';
        order.push(`checkpoint:${checkpointSteps.get(id)}`);
        return reply({
          id,
          job_id: 'job_1',
          attempt: 1,
          step: checkpointSteps.get(id),
          kind: 'adapter',
          final: false,
          status: 'complete',
          size: parsed.size,
          sha256: parsed.sha256,
          metadata: {},
          created_at: new Date().toISOString(),
        });
      }
      if (url.endsWith('/events')) {
        received.events.push(...(parsed.events ?? []).map((e) => e.seq));
        order.push(...(parsed.events ?? []).map((e) => `event:${e.seq}`));
      }
      if (url.endsWith('/metrics')) {
        received.steps.push(...(parsed.points ?? []).map((p) => p.step));
        order.push(...(parsed.points ?? []).map((p) => `metric:${p.step}`));
      }
      reply({ accepted: 1, duplicates: 0 });
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
    expect(first.pending).toMatchObject({ events: 2, points: 2 });

    // a new process on the same work dir finds the outbox (seq continues after it)
    const second = new Reporter(opts);
    expect(second.pending).toMatchObject({ events: 2, points: 2 });
    second.event('job.progress', { step: 3 });
    const received: Received = { events: [], steps: [] };
    server = await reportServer(port, received);
    await second.drain(10_000);
    expect(received.events).toEqual([0, 1, 2]);
    expect(received.steps).toEqual([1, 2]);
    expect(second.pending).toEqual({ events: 0, points: 0, rollouts: 0, checkpoints: 0 });
    expect(readdirSync(dir)).toContain('outbox-1.json');
  });

  it('queues rollouts and checkpoints without waiting on a down API, uploads each checkpoint once, after the metrics before it', async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'cgrpo-outbox-'));
    const api = new RunnerApi({ baseUrl: `http://127.0.0.1:${port}`, token: 'cgrpo_rt_x', log: quiet });
    const reporter = new Reporter({ api, jobId: 'job_1', leaseId: 'lease_1', attempt: 1, dir, log: quiet });
    const meta = { kind: 'adapter' as const, final: false, metadata: {} };
    // metric, event, rollouts and checkpoint are synchronous: a step never waits on the API
    for (let step = 1; step <= 4; step++) {
      reporter.metric(step, { loss: step });
      reporter.event('job.progress', { step });
      reporter.rollouts(step, new Uint8Array(100).fill(step));
      if (step % 2 === 0) reporter.checkpoint(step, new Uint8Array(64).fill(step), meta);
    }
    reporter.checkpoint(4, new Uint8Array(64).fill(9), meta); // a pause on a checkpoint step
    expect(await reporter.flush()).toBe(false);
    expect(reporter.pending).toEqual({ events: 4, points: 4, rollouts: 4, checkpoints: 2 });
    expect(reporter.pendingBytes).toBe(4 * 100 + 2 * 64);

    const received: Received = { events: [], steps: [] };
    server = await reportServer(port, received);
    await reporter.drain(10_000);
    const order = received.order ?? [];
    expect(order.filter((o) => o.startsWith('checkpoint:'))).toEqual(['checkpoint:2', 'checkpoint:4']);
    expect(order.filter((o) => o.startsWith('rollouts:'))).toEqual([1, 2, 3, 4].map((s) => `rollouts:${s}`));
    expect(received.steps).toEqual([1, 2, 3, 4]);
    for (const step of [2, 4]) {
      // every metric point up to a checkpoint's step arrived before it
      expect(order.indexOf(`metric:${step}`)).toBeLessThan(order.indexOf(`checkpoint:${step}`));
    }
    expect(reporter.checkpointOf(4)?.id).toBe('ckpt_2');
    expect(reporter.hasCheckpoint(4)).toBe(true);
    // the uploaded archive stays as the local copy a resume on this runner reads
    expect(readdirSync(join(dir, 'checkpoints')).sort()).toEqual(['ckpt_1.tar', 'ckpt_2.tar']);
    expect(reporter.pendingBytes).toBe(0);
  });

  it('applies back-pressure only when the outbox budget is full', async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'cgrpo-outbox-'));
    const api = new RunnerApi({ baseUrl: `http://127.0.0.1:${port}`, token: 'cgrpo_rt_x', log: quiet });
    const reporter = new Reporter({
      api,
      jobId: 'job_1',
      leaseId: 'lease_1',
      attempt: 1,
      dir,
      log: quiet,
      budgetBytes: 1000,
    });
    reporter.start();
    try {
      await reporter.room(600); // empty: at once
      reporter.rollouts(1, new Uint8Array(600));
      await reporter.room(400); // 600 + 400 fits
      reporter.rollouts(2, new Uint8Array(400));
      let roomy = false;
      const waiting = reporter.room(300).then(() => {
        roomy = true;
      });
      await new Promise((r) => setTimeout(r, 1500));
      expect(roomy).toBe(false); // full, the API down: training waits
      server = await reportServer(port, { events: [], steps: [] });
      await waiting;
      expect(reporter.pendingBytes).toBeLessThanOrEqual(700);
    } finally {
      reporter.stop();
    }
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
    const badThreads = cli('--api', 'http://127.0.0.1:1', '--token', 'cgrpo_rt_abc', '--threads', '0');
    expect(badThreads.status).toBe(2);
    expect(badThreads.stderr).toMatch(/--threads: must be a positive integer, got 0/);
    const register = cli('register', '--api', 'http://127.0.0.1:1');
    expect(register.status).toBe(2);
    expect(register.stderr).toMatch(/--registration-key is required/);
  });
});
