// `npm run bench:api`: job-submit latency and metric-ingestion throughput against the real Worker
// under `wrangler dev` on loopback (local D1), with a temporary state directory and free ports.
// Appends a row to bench/RESULTS.md under "## api". Targets: submit p99 < 50 ms, ingestion
// ≥ 5,000 points/s in batches of 100.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startLocalApi } from '../scripts/start.mjs';

const root = path.resolve(import.meta.dirname, '..');
const SUBMITS = Number(process.env.BENCH_SUBMITS ?? 300);
const BATCHES = Number(process.env.BENCH_BATCHES ?? 100);
const POINTS_PER_BATCH = 100;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function post(url: string, key: string, body: unknown): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function expectOk(res: Response, what: string) {
  if (!res.ok) throw new Error(`${what}: ${res.status} ${await res.text()}`);
  return res.json() as Promise<Record<string, unknown>>;
}

const spec = (i: number) => ({
  name: `bench ${i}`,
  model: { id: 'Qwen/Qwen3-0.6B' },
  datasets: { train: { uri: 'https://example.test/train.jsonl' } },
  hyperparameters: { group_size: 8, total_steps: 100 },
});

async function main() {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'cgrpo-bench-api-'));
  const api = await startLocalApi({
    port: await freePort(),
    inspectorPort: await freePort(),
    stateDir,
    log: () => undefined,
  });
  try {
    const boot = await expectOk(
      await fetch(`${api.url}/v1/bootstrap`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ handle: 'bench' }),
      }),
      'bootstrap',
    );
    const key = boot.api_key as string;

    // ---- baseline: the same loopback + workerd path with no D1 work (GET /v1/health) ----
    const health: number[] = [];
    for (let i = 0; i < 20 + SUBMITS; i++) {
      const started = performance.now();
      await (await fetch(`${api.url}/v1/health`)).text();
      if (i >= 20) health.push(performance.now() - started);
    }
    health.sort((a, b) => a - b);
    const h50 = percentile(health, 50);
    const h99 = percentile(health, 99);

    // ---- job submit latency (sequential, after a warm-up) ----
    for (let i = 0; i < 20; i++)
      await expectOk(await post(`${api.url}/v1/jobs`, key, spec(i)), 'warm-up submit');
    const latencies: number[] = [];
    for (let i = 0; i < SUBMITS; i++) {
      const started = performance.now();
      const res = await post(`${api.url}/v1/jobs`, key, spec(i));
      await expectOk(res, 'submit');
      latencies.push(performance.now() - started);
    }
    latencies.sort((a, b) => a - b);
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);

    // ---- metric ingestion: batches of 100 points, one job, sequential then 4 in flight ----
    const runner = await expectOk(
      await post(`${api.url}/v1/runner/register`, boot.registration_key as string, { name: 'bench' }),
      'register',
    );
    const token = runner.token as string;
    const lease = await expectOk(
      await post(`${api.url}/v1/runner/lease`, token, { wait_seconds: 0 }),
      'lease',
    );
    const jobId = lease.job_id as string;
    const batch = (b: number) => ({
      lease_id: lease.lease_id,
      attempt: lease.attempt,
      points: Array.from({ length: POINTS_PER_BATCH }, (_, i) => {
        const step = b * POINTS_PER_BATCH + i;
        return {
          step,
          values: {
            loss: 1 / (step + 1),
            'reward/mean': (step % 100) / 100,
            'reward/std': 0.25,
            'refinement/admitted_correct': 0.3,
            'entropy/mean': 1.2,
            'grad/norm': 0.9,
            lr: 1e-6,
            'tokens/response_mean': 512,
          },
        };
      }),
    });
    const ingest = async (from: number, count: number, inFlight: number) => {
      const started = performance.now();
      let next = from;
      const worker = async () => {
        while (next < from + count) {
          const b = next++;
          const result = await expectOk(
            await post(`${api.url}/v1/runner/jobs/${jobId}/metrics`, token, batch(b)),
            'metrics',
          );
          if (result.accepted !== POINTS_PER_BATCH)
            throw new Error(`batch ${b}: accepted ${result.accepted}`);
        }
      };
      await Promise.all(Array.from({ length: inFlight }, worker));
      return (count * POINTS_PER_BATCH) / ((performance.now() - started) / 1000);
    };
    await ingest(0, 5, 1); // warm-up
    const sequential = await ingest(5, BATCHES, 1);
    const parallel = await ingest(5 + BATCHES, BATCHES, 4);
    const check = await fetch(
      `${api.url}/v1/jobs/${jobId}/metrics?limit=1&from_step=${(5 + 2 * BATCHES) * POINTS_PER_BATCH - 1}`,
      {
        headers: { authorization: `Bearer ${key}` },
      },
    );
    const last = (await expectOk(check, 'read back')) as { data: { step: number }[] };
    if (last.data[0]?.step !== (5 + 2 * BATCHES) * POINTS_PER_BATCH - 1)
      throw new Error('the last point was not stored');

    const lines = [
      `job submit latency (n=${SUBMITS}, sequential): p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms (target p99 < 50 ms)`,
      `baseline GET /v1/health in the same run: p50 ${h50.toFixed(1)} ms, p99 ${h99.toFixed(1)} ms`,
      `metric ingestion, batches of ${POINTS_PER_BATCH} points × 8 values: ${Math.round(sequential)} points/s sequential, ${Math.round(parallel)} points/s with 4 batches in flight (target ≥ 5,000)`,
    ];
    console.log(lines.join('\n'));
    record(p50, p99, h50, h99, sequential, parallel);
  } finally {
    await api.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

function record(p50: number, p99: number, h50: number, h99: number, sequential: number, parallel: number) {
  const file = path.join(root, 'bench', 'RESULTS.md');
  const text = readFileSync(file, 'utf8');
  const date = new Date().toISOString().slice(0, 10);
  const load = os.loadavg()[0]!.toFixed(1);
  const row = `| ${date} | ${SUBMITS} | ${p50.toFixed(1)} / ${p99.toFixed(1)} ms | ${h50.toFixed(1)} / ${h99.toFixed(1)} ms | ${Math.round(sequential)} | ${Math.round(parallel)} | ${load} |`;
  const heading = '## api';
  if (!text.includes(`\n${heading}\n`) && !text.startsWith(`${heading}\n`)) {
    const section = [
      heading,
      '',
      '`npm run bench:api` on a 2-core x86_64 VM, Node 22, against `wrangler dev` on 127.0.0.1 with a fresh local D1',
      '(temporary state dir). Submit: sequential POST /v1/jobs with a minimal spec (validation, defaults, reference',
      'checks, insert, job.queued event). Ingestion: POST /v1/runner/jobs/:id/metrics, 100 points of 8 values per',
      'batch (one row per step, 48 rows per statement, one D1 batch per request). The VM is shared with other builds;',
      'the 1-minute load average at the end of the run is recorded.',
      '',
      '| date | submits | submit p50 / p99 | health (no D1) p50 / p99 | points/s (1 in flight) | points/s (4 in flight) | load avg |',
      '| --- | --- | --- | --- | --- | --- | --- |',
      row,
      '',
    ].join('\n');
    writeFileSync(file, `${text.trimEnd()}\n\n${section}`);
    return;
  }
  // Append the row at the end of the api section's table.
  const start = text.indexOf(`${heading}\n`);
  const nextHeading = text.indexOf('\n## ', start + heading.length);
  const end = nextHeading === -1 ? text.length : nextHeading;
  const section = text.slice(start, end).trimEnd();
  writeFileSync(file, `${text.slice(0, start)}${section}\n${row}\n${text.slice(end)}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
