// The `npm start` demo: one CPU runner against the local API (registered once, its token kept in
// .cgrpo/runner.json) and a small Critique-GRPO job on the shipped tiny model and arithmetic
// dataset, followed step by step, ending with its metrics as a terminal chart and an SVG file.
//   startRunner({ url, registrationKey }) → { child, stop }
//   submitDemoJob({ url, apiKey }) → job id      followJob({ url, apiKey, jobId }) → final job
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stateDir = path.join(root, '.cgrpo');
const runnerConfigPath = path.join(stateDir, 'runner.json');
const runnerBin = path.join(root, 'gpu-runner', 'bin', 'cgrpo-runner.mjs');

/**
 * The demo job: also what docs/runner.md's curl example submits. The shipped tiny model has random
 * weights, so it cannot yet write `\boxed{}` answers; the demo's reward is whether the correct
 * digit appears in the 8-token response (builtin:regex), which such a model hits ~20% of the time
 * at first: dense enough to learn from in a minute of CPU. The end-to-end tests use builtin:math.
 */
export const DEMO_JOB = {
  name: 'demo: single-digit arithmetic on tiny-llama',
  algorithm: 'critique-grpo',
  model: { id: 'tiny-llama', adapter: { type: 'lora', rank: 8, alpha: 16 } },
  datasets: {
    train: { uri: 'file:examples/datasets/arith-train.jsonl' },
    validation: { uri: 'file:examples/datasets/arith-val.jsonl' },
  },
  verifier: { plugin: 'builtin:regex', config: { pattern: '{reference}', mode: 'match' } },
  critic: { plugin: 'builtin:ground-truth' },
  seed: 1,
  checkpoint_every: 10,
  evaluation: { every_steps: 10, samples_per_prompt: 4, temperature: 1, max_prompts: 20 },
  hyperparameters: {
    prompts_per_step: 8,
    group_size: 8,
    max_response_tokens: 8,
    max_prompt_tokens: 64,
    learning_rate: 0.1,
    total_steps: 80,
    mini_batches_per_step: 2,
    system_prompt: '',
    prompt_template: '{question} =',
  },
};

async function call(url, token, method, route, body) {
  const res = await fetch(`${url}${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** A runner token for this local API: reused from .cgrpo/runner.json, else registered. */
export async function runnerToken({ url, registrationKey }) {
  if (existsSync(runnerConfigPath)) {
    const saved = JSON.parse(readFileSync(runnerConfigPath, 'utf8'));
    if (saved.api_url === url && saved.registration_key === registrationKey && saved.token)
      return saved.token;
  }
  const body = await call(url, registrationKey, 'POST', '/v1/runner/register', {
    name: 'local-cpu',
    labels: ['local'],
    capabilities: ['cpu'],
    version: '0.1.0',
  });
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(
    runnerConfigPath,
    `${JSON.stringify({ api_url: url, registration_key: registrationKey, runner_id: body.runner_id, token: body.token }, null, 2)}\n`,
    { mode: 0o600 },
  );
  return body.token;
}

/** Starts one runner on the CPU; its log lines are prefixed with [runner]. */
export async function startRunner({
  url,
  registrationKey,
  log = (l) => process.stdout.write(`[runner] ${l}\n`),
}) {
  const token = await runnerToken({ url, registrationKey });
  const child = spawn(
    process.execPath,
    [
      '--no-node-snapshot',
      runnerBin,
      '--api',
      url,
      '--token',
      token,
      '--device',
      'cpu',
      '--labels',
      'local',
      '--work-dir',
      path.join(stateDir, 'runner'),
      '--log-level',
      'warn',
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const forward = (d) => {
    for (const line of String(d).split('\n')) if (line.trim()) log(line);
  };
  child.stdout.on('data', forward);
  child.stderr.on('data', forward);
  // the API stops with npm start; a job left running is requeued and resumed by the next start
  process.on('exit', () => child.kill('SIGKILL'));
  return { child, stop: () => child.kill('SIGKILL') };
}

export async function submitDemoJob({ url, apiKey }) {
  const job = await call(url, apiKey, 'POST', '/v1/jobs', DEMO_JOB);
  return job.id;
}

const pick = (values, ...names) => {
  for (const n of names) if (typeof values[n] === 'number') return values[n];
  return null;
};
const fmt = (v, digits = 3) => (typeof v === 'number' ? v.toFixed(digits) : '  -  ');

/** Rows of an ASCII chart of series (values in [0, max]) over steps. */
export function asciiChart(series, { height = 10, width = 60, max } = {}) {
  const steps = Math.max(...series.map((s) => (s.points.length ? s.points[s.points.length - 1][0] : 0)), 1);
  const top = max ?? Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const grid = Array.from({ length: height }, () => Array(width).fill(' '));
  for (const s of series) {
    for (const [step, v] of s.points) {
      const x = Math.min(width - 1, Math.round(((step - 1) / Math.max(1, steps - 1)) * (width - 1)));
      const y = height - 1 - Math.min(height - 1, Math.round((v / top) * (height - 1)));
      grid[y][x] = s.mark;
    }
  }
  const rows = grid.map(
    (r, i) => `${(i === 0 ? top.toFixed(2) : i === height - 1 ? '0.00' : '').padStart(6)} |${r.join('')}`,
  );
  rows.push(`${''.padStart(6)} +${'-'.repeat(width)}`);
  rows.push(`${''.padStart(8)}step 1${`step ${steps}`.padStart(width - 6)}`);
  rows.push(`${''.padStart(8)}${series.map((s) => `${s.mark} ${s.name}`).join('   ')}`);
  return rows;
}

export function svgChart(series, { title }) {
  const W = 640;
  const H = 320;
  const pad = 40;
  const steps = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[0])));
  const top = Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const x = (step) => pad + ((step - 1) / Math.max(1, steps - 1)) * (W - 2 * pad);
  const y = (v) => H - pad - (v / top) * (H - 2 * pad);
  const colors = ['#2563eb', '#dc2626', '#16a34a', '#9333ea'];
  const body = series
    .map((s, i) => {
      const pts = s.points.map(([st, v]) => `${x(st).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
      const dots = s.points
        .map(
          ([st, v]) =>
            `<circle cx="${x(st).toFixed(1)}" cy="${y(v).toFixed(1)}" r="2.5" fill="${colors[i]}"/>`,
        )
        .join('');
      return `<polyline fill="none" stroke="${colors[i]}" stroke-width="2" points="${pts}"/>${dots}<text x="${pad + 150 * i}" y="${H - 8}" fill="${colors[i]}" font-size="12">${s.name}</text>`;
    })
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${pad}" y="20" font-size="14">${title}</text>
<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="#888"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${H - pad}" stroke="#888"/>
<text x="4" y="${pad + 4}" font-size="11">${top.toFixed(2)}</text><text x="20" y="${H - pad}" font-size="11">0</text>
<text x="${W - pad - 40}" y="${H - pad + 14}" font-size="11">step ${steps}</text>
${body}
</svg>
`;
}

/** Polls the job and its metrics, printing one line per new step, until the job ends. */
export async function followJob({ url, apiKey, jobId, out = (l) => process.stdout.write(`${l}\n`) }) {
  let printed = 0;
  let job;
  let points = [];
  for (;;) {
    job = await call(url, apiKey, 'GET', `/v1/jobs/${jobId}`);
    const series = await call(url, apiKey, 'GET', `/v1/jobs/${jobId}/metrics?limit=1000`);
    points = series.data.sort((a, b) => a.step - b.step);
    for (const p of points.filter((q) => q.step > printed)) {
      const v = p.values;
      const ev = pick(v, 'eval/pass@1', 'eval/pass_at_1');
      out(
        `[demo] step ${String(p.step).padStart(3)}/${job.total_steps}  reward ${fmt(pick(v, 'reward/mean'))}  pass@1 ${fmt(pick(v, 'pass@1/train', 'pass_at_1/train'))}  refinements ok ${fmt(pick(v, 'refinement/success_rate'))}  loss ${fmt(pick(v, 'loss'), 4)}  ${fmt(pick(v, 'step_seconds'), 2)} s${ev !== null ? `  eval pass@1 ${fmt(ev)}` : ''}`,
      );
      printed = p.step;
    }
    if (['succeeded', 'failed', 'cancelled'].includes(job.status)) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  return { job, points };
}

/** Rolling mean, so the chart shows the trend through the noise of a few samples per step. */
function smooth(points, k = 5) {
  return points.map(([s], i) => {
    const w = points.slice(Math.max(0, i - k + 1), i + 1);
    return [s, w.reduce((a, p) => a + p[1], 0) / w.length];
  });
}

/** The whole demo: runner, job, progress, chart. Returns the runner handle (it keeps serving jobs). */
export async function runDemo({ url, apiKey, registrationKey, out = (l) => process.stdout.write(`${l}\n`) }) {
  const runner = await startRunner({ url, registrationKey });
  const jobId = await submitDemoJob({ url, apiKey });
  out(
    `[demo] submitted ${jobId}: Critique-GRPO on tiny-llama (LoRA), single-digit arithmetic, ${DEMO_JOB.hyperparameters.total_steps} steps on the CPU`,
  );
  const { job, points } = await followJob({ url, apiKey, jobId, out });
  if (job.status !== 'succeeded') {
    out(`[demo] the job ended ${job.status}: ${job.error ? `${job.error.code}: ${job.error.message}` : ''}`);
    return runner;
  }
  const reward = points.map((p) => [p.step, pick(p.values, 'reward/mean') ?? 0]);
  const evalPass = points
    .filter((p) => pick(p.values, 'eval/pass@1', 'eval/pass_at_1') !== null)
    .map((p) => [p.step, pick(p.values, 'eval/pass@1', 'eval/pass_at_1')]);
  const series = [
    { name: 'train reward (mean of last 5 steps)', mark: '*', points: smooth(reward) },
    { name: 'eval pass@1', mark: 'o', points: evalPass },
  ];
  out('');
  for (const row of asciiChart(series)) out(`[demo] ${row}`);
  mkdirSync(stateDir, { recursive: true });
  const svgPath = path.join(stateDir, `demo-${jobId}.svg`);
  writeFileSync(svgPath, svgChart(series, { title: `${DEMO_JOB.name} (${jobId})` }));
  const first = reward.slice(0, 10).reduce((a, p) => a + p[1], 0) / Math.min(10, reward.length);
  const last = reward.slice(-10).reduce((a, p) => a + p[1], 0) / Math.min(10, reward.length);
  const checkpoints = await call(url, apiKey, 'GET', `/v1/jobs/${jobId}/checkpoints`);
  const final = checkpoints.data.find((c) => c.final);
  out('');
  out(
    `[demo] ${jobId} succeeded: mean train reward ${first.toFixed(3)} over the first 10 steps → ${last.toFixed(3)} over the last 10`,
  );
  if (evalPass.length)
    out(`[demo] eval pass@1 by step: ${evalPass.map(([s, v]) => `${s}: ${v.toFixed(3)}`).join(', ')}`);
  out(`[demo] chart: ${path.relative(process.cwd(), svgPath)}`);
  if (final) {
    out(
      `[demo] trained LoRA adapter (a tar of a PEFT folder): curl -H "Authorization: Bearer $KEY" ${url}/v1/jobs/${jobId}/checkpoints/${final.id}/content -o adapter.tar`,
    );
  }
  out('[demo] the runner stays up: POST more jobs to the API (see docs/runner.md); Ctrl-C stops everything');
  return runner;
}
