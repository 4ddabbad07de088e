// npm run bench:webhooks — webhook delivery throughput and event→delivery delay under `wrangler dev`.
// Starts the Worker with a fresh local state (D1 migrated), a receiver on 127.0.0.1 that verifies
// every delivery with @cgrpo/client's verifyWebhook, then:
//   burst:   JOBS jobs submitted 8 at a time, each job.queued event fanned out to ENDPOINTS endpoints
//            → deliveries/s from the first submit to the last verified delivery;
//   latency: jobs submitted one at a time, 1 endpoint → delay from the event's timestamp to its arrival.
// Appends a row to bench/RESULTS.md under "## webhooks".
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { verifyWebhook } from '../client/src/webhooks';

const root = path.resolve(import.meta.dirname, '..');
const PORT = Number(process.env.BENCH_PORT ?? 8797);
const JOBS = Number(process.env.BENCH_JOBS ?? 100);
const ENDPOINTS = Number(process.env.BENCH_ENDPOINTS ?? 10);
const LATENCY_JOBS = Number(process.env.BENCH_LATENCY_JOBS ?? 60);
const env = {
  ...process.env,
  WRANGLER_SEND_METRICS: 'false',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  WRANGLER_HIDE_BANNER: 'true',
  CI: 'true',
};

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`)),
    );
  });
}

interface Arrival {
  at: number;
  eventAt: number;
  jobId: string;
}

async function main() {
  const state = mkdtempSync(path.join(os.tmpdir(), 'cgrpo-bench-webhooks-'));
  const secrets = new Map<string, string>();
  const arrivals: Arrival[] = [];
  let rejected = 0;
  const receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const at = Date.now();
      const name = (req.url ?? '').split('/').pop() ?? '';
      try {
        const event = await verifyWebhook<{ job: { id: string } }>(
          secrets.get(name) ?? '',
          req.headers,
          Buffer.concat(chunks),
        );
        arrivals.push({ at, eventAt: Date.parse(event.timestamp), jobId: event.data.job.id });
        res.writeHead(204).end();
      } catch {
        rejected++;
        res.writeHead(401).end();
      }
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const receiverPort = (receiver.address() as { port: number }).port;

  await run('wrangler', ['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', state]);
  const dev = spawn(
    'wrangler',
    [
      'dev',
      '--port',
      String(PORT),
      '--inspector-port',
      String(PORT + 1),
      '--persist-to',
      state,
      '--log-level',
      'error',
    ],
    { cwd: root, env, stdio: ['ignore', 'ignore', 'inherit'], detached: true },
  );
  const base = `http://127.0.0.1:${PORT}`;
  try {
    for (let i = 0; ; i++) {
      if (i > 300) throw new Error('wrangler dev did not start in 60 s');
      if (
        await fetch(`${base}/v1/health`).then(
          (r) => r.ok,
          () => false,
        )
      )
        break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const boot = (await (
      await fetch(`${base}/v1/bootstrap`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"handle":"bench"}',
      })
    ).json()) as { api_key: string };
    const headers = { authorization: `Bearer ${boot.api_key}`, 'content-type': 'application/json' };
    const post = async (p: string, body: unknown) => {
      const r = await fetch(`${base}${p}`, { method: 'POST', headers, body: JSON.stringify(body) });
      if (!r.ok) throw new Error(`POST ${p}: ${r.status} ${await r.text()}`);
      return r.json() as Promise<{ id: string; secret?: string }>;
    };
    const addEndpoint = async (name: string) => {
      const ep = await post('/v1/webhooks/endpoints', {
        url: `http://127.0.0.1:${receiverPort}/hook/${name}`,
        event_types: ['job.queued'],
      });
      secrets.set(name, ep.secret!);
      return ep;
    };
    const spec = (i: number) => ({
      name: `bench-${i}`,
      model: { id: 'Qwen/Qwen3-0.6B' },
      datasets: { train: { uri: 'https://data.example.com/train.jsonl' } },
    });
    const waitForArrivals = async (n: number, timeoutMs: number) => {
      const start = Date.now();
      while (arrivals.length < n && Date.now() - start < timeoutMs)
        await new Promise((r) => setTimeout(r, 20));
      if (arrivals.length < n) throw new Error(`only ${arrivals.length}/${n} deliveries arrived`);
    };

    // Latency: one endpoint, events one at a time (the Queue's 1 s batch window is part of the delay).
    const first = await addEndpoint('latency');
    for (let i = 0; i < LATENCY_JOBS; i++) {
      await post('/v1/jobs', spec(i));
      await new Promise((r) => setTimeout(r, 50));
    }
    await waitForArrivals(LATENCY_JOBS, 60_000);
    const delays = arrivals.map((a) => a.at - a.eventAt).sort((a, b) => a - b);
    const pct = (p: number) => delays[Math.min(delays.length - 1, Math.floor((p / 100) * delays.length))]!;
    const latency = { p50: pct(50), p99: pct(99), n: delays.length };
    await fetch(`${base}/v1/webhooks/endpoints/${first.id}`, {
      method: 'PATCH',
      headers,
      body: '{"enabled":false}',
    });

    // Burst: ENDPOINTS endpoints, JOBS jobs 8 at a time.
    arrivals.length = 0;
    for (let e = 0; e < ENDPOINTS; e++) await addEndpoint(`burst-${e}`);
    const started = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < JOBS) await post('/v1/jobs', spec(next++));
      }),
    );
    const submitted = Date.now();
    await waitForArrivals(JOBS * ENDPOINTS, 300_000);
    const last = Math.max(...arrivals.map((a) => a.at));
    const throughput = (JOBS * ENDPOINTS) / ((last - started) / 1000);
    const burstDelays = arrivals.map((a) => a.at - a.eventAt).sort((a, b) => a - b);
    const burstP50 = burstDelays[Math.floor(burstDelays.length / 2)]!;
    const burstP99 = burstDelays[Math.floor(burstDelays.length * 0.99)]!;

    const line =
      `| ${new Date().toISOString().slice(0, 10)} | ${JOBS}×${ENDPOINTS} = ${JOBS * ENDPOINTS} | ${throughput.toFixed(0)} deliveries/s ` +
      `(submits took ${((submitted - started) / 1000).toFixed(1)} s; load avg ${os.loadavg()[0]!.toFixed(1)}) | ${burstP50} / ${burstP99} ms | ${latency.p50} / ${latency.p99} ms (n=${latency.n}) | ${rejected} |`;
    console.log(
      `\nburst: ${JOBS * ENDPOINTS} deliveries in ${((last - started) / 1000).toFixed(2)} s = ${throughput.toFixed(1)}/s; event→delivery under burst p50 ${burstP50} ms, p99 ${burstP99} ms`,
    );
    console.log(
      `light load: event→delivery p50 ${latency.p50} ms, p99 ${latency.p99} ms over ${latency.n} events; signature failures: ${rejected}`,
    );
    const results = path.join(root, 'bench', 'RESULTS.md');
    let text = '';
    try {
      text = readFileSync(results, 'utf8');
    } catch {}
    const heading = '## webhooks';
    if (!text.includes(heading)) {
      const intro = [
        '',
        heading,
        '',
        '`npm run bench:webhooks` on a 2-core x86_64 VM, Node 22, `wrangler dev` with local D1/Queues and a receiver on',
        '127.0.0.1 verifying each signature. Burst: jobs submitted 8 at a time, each job.queued event fanned out to every',
        'endpoint. Latency is from the event (fan-out) to arrival; it includes the Queue consumer batch window',
        '(`max_batch_timeout = 1` s in wrangler.toml).',
        '',
        '| date | deliveries | burst throughput | burst event→delivery p50 / p99 | light-load event→delivery p50 / p99 | bad signatures |',
        '| --- | --- | --- | --- | --- | --- |',
        '',
      ].join('\n');
      writeFileSync(results, `${text.trimEnd()}\n${intro}`);
      text = readFileSync(results, 'utf8');
    }
    // Append the row at the end of the webhooks table (the section may be followed by others).
    const start = text.indexOf(heading);
    const nextHeading = text.indexOf('\n## ', start + heading.length);
    const end = nextHeading === -1 ? text.length : nextHeading;
    const section = `${text.slice(start, end).trimEnd()}\n${line}\n`;
    writeFileSync(
      results,
      text.slice(0, start) + section + (nextHeading === -1 ? '' : `\n${text.slice(nextHeading + 1)}`),
    );
  } finally {
    try {
      process.kill(-dev.pid!, 'SIGTERM');
    } catch {}
    receiver.closeAllConnections();
    receiver.close();
    rmSync(state, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
