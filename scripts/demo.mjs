// The `npm start` demo: one CPU runner against the local API (registered once, its token kept in
// .cgrpo/runner.json); the starter model evaluated on held-out problems, a Critique-GRPO job from
// it followed step by step, the trained model evaluated on the same problems, and what changed.
//   startRunner({ url, registrationKey }) → { child, stop }
//   followJob({ url, apiKey, jobId }) → final job      runDemo({ url, apiKey, registrationKey })
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stateDir = path.join(root, '.cgrpo');
const runnerConfigPath = path.join(stateDir, 'runner.json');
const runnerBin = path.join(root, 'gpu-runner', 'bin', 'cgrpo-runner.mjs');

/** Steps of the demo's Critique-GRPO job (CGRPO_DEMO_STEPS shortens it, e.g. in CI). */
const DEMO_STEPS = Number(process.env.CGRPO_DEMO_STEPS ?? 20);
/** Validation problems evaluated before and after (the same fixed sample, greedy). */
const DEMO_EVAL = Number(process.env.CGRPO_DEMO_EVAL ?? 320);

const ARITHMETIC = 'file:examples/datasets/arithmetic';

/**
 * The demo job: Critique-GRPO from the starter model cgrpo trains itself (gpu-runner/models/starter,
 * `npm run models:starter`) on the shipped arithmetic task, rewarded by builtin:math (the boxed
 * answer must equal the reference), critiqued by builtin:ground-truth. Also what
 * docs/quickstart.md submits.
 */
export const DEMO_JOB = {
  name: 'demo: Critique-GRPO on the starter model, multi-step arithmetic',
  algorithm: 'critique-grpo',
  model: { id: 'starter', adapter: { type: 'full' } },
  datasets: {
    train: { uri: `${ARITHMETIC}/train.jsonl` },
    validation: { uri: `${ARITHMETIC}/validation.jsonl` },
  },
  verifier: { plugin: 'builtin:math' },
  critic: { plugin: 'builtin:ground-truth' },
  seed: 1,
  checkpoint_every: 10,
  evaluation: { every_steps: 0, at_end: false },
  hyperparameters: {
    prompts_per_step: 16,
    group_size: 8,
    max_response_tokens: 48,
    max_prompt_tokens: 256,
    learning_rate: 3e-5,
    total_steps: DEMO_STEPS,
    mini_batches_per_step: 1,
  },
};

/** An evaluation job: the same fixed validation sample, greedy, for `model` (a name or checkpoint:<id>). */
export function evaluationJob(model, label) {
  return {
    name: `demo: evaluate ${label}`,
    algorithm: 'evaluate',
    model: { id: model },
    datasets: { train: { uri: `${ARITHMETIC}/validation.jsonl`, limit: DEMO_EVAL } },
    verifier: { plugin: 'builtin:math' },
    seed: 0,
    evaluation: { samples_per_prompt: 1, temperature: 0, max_prompts: null },
    hyperparameters: { max_response_tokens: 48, max_prompt_tokens: 256 },
  };
}

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

/**
 * Whether the change is more than chance, on the same problems: McNemar's test over the problems
 * solved before but not after (lost) and after but not before (gained), |z| >= 1.96 at 5%.
 */
export function verdict(beforeRecords, afterRecords) {
  const after = new Map(afterRecords.map((r) => [r.row, r.correct]));
  let gained = 0;
  let lost = 0;
  for (const b of beforeRecords) {
    const a = after.get(b.row);
    if (a === undefined) continue;
    if (a && !b.correct) gained++;
    if (!a && b.correct) lost++;
  }
  const z = gained + lost > 0 ? (gained - lost) / Math.sqrt(gained + lost) : 0;
  const what =
    Math.abs(z) < 1.96
      ? 'no significant change: this run did not move held-out accuracy (why: bench/RESULTS.md, "learning: why held-out pass@1 does not move")'
      : z > 0
        ? 'a significant gain on held-out problems'
        : 'a significant loss on held-out problems (see bench/RESULTS.md, "learning: why held-out pass@1 does not move")';
  return `newly solved ${gained}, newly failed ${lost} (McNemar z = ${z.toFixed(2)}): ${what}`;
}

/** Wilson score interval (95%) of k successes in n. */
export function wilson(k, n, z = 1.96) {
  if (n === 0) return [0, 1];
  const p = k / n;
  const d = 1 + (z * z) / n;
  const c = (p + (z * z) / (2 * n)) / d;
  const h = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / d;
  return [Math.max(0, c - h), Math.min(1, c + h)];
}

/** Runs an evaluation job to the end; returns pass@1, the sample size and its records. */
async function evaluateModel({ url, apiKey, model, label, out }) {
  const job = await call(url, apiKey, 'POST', '/v1/jobs', evaluationJob(model, label));
  out(`[demo] evaluating ${label} on ${DEMO_EVAL} held-out problems (${job.id}) …`);
  let status;
  for (;;) {
    status = await call(url, apiKey, 'GET', `/v1/jobs/${job.id}`);
    if (['succeeded', 'failed', 'cancelled'].includes(status.status)) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  if (status.status !== 'succeeded')
    throw new Error(`evaluation of ${label} ended ${status.status}: ${status.error?.message ?? ''}`);
  const [point] = (await call(url, apiKey, 'GET', `/v1/jobs/${job.id}/metrics`)).data;
  const records = (await call(url, apiKey, 'GET', `/v1/jobs/${job.id}/rollouts?step=0&limit=5000`)).data;
  const n = records.length;
  const k = records.filter((r) => r.correct).length;
  return { jobId: job.id, pass1: point.values['eval/pass@1'], n, k, records };
}

const pct = (v) => `${(100 * v).toFixed(1)}%`;
const oneLine = (text) => text.replaceAll('\n', ' | ').slice(0, 110);

/** The whole demo: runner, evaluation before, Critique-GRPO, evaluation after, what changed. */
export async function runDemo({ url, apiKey, registrationKey, out = (l) => process.stdout.write(`${l}\n`) }) {
  const runner = await startRunner({ url, registrationKey });
  const t0 = Date.now();
  const before = await evaluateModel({ url, apiKey, model: 'starter', label: 'the starter model', out });
  const [lo0, hi0] = wilson(before.k, before.n);
  out(`[demo] before: pass@1 ${pct(before.pass1)} (95% CI ${pct(lo0)}–${pct(hi0)}, ${before.k}/${before.n})`);

  const { id: jobId } = await call(url, apiKey, 'POST', '/v1/jobs', DEMO_JOB);
  out(
    `[demo] submitted ${jobId}: Critique-GRPO on the starter model, ${DEMO_STEPS} steps × ${DEMO_JOB.hyperparameters.prompts_per_step} problems × ${DEMO_JOB.hyperparameters.group_size} samples, builtin:math + builtin:ground-truth critic`,
  );
  out(`[demo] follow it live: npx cgrpo jobs follow ${jobId}`);
  const { job, points } = await followJob({ url, apiKey, jobId, out });
  if (job.status !== 'succeeded') {
    out(`[demo] the job ended ${job.status}: ${job.error ? `${job.error.code}: ${job.error.message}` : ''}`);
    return runner;
  }
  const checkpoints = await call(url, apiKey, 'GET', `/v1/jobs/${jobId}/checkpoints`);
  const final = checkpoints.data.find((c) => c.final);
  const after = await evaluateModel({
    url,
    apiKey,
    model: `checkpoint:${final.id}`,
    label: 'the trained model',
    out,
  });
  const [lo1, hi1] = wilson(after.k, after.n);

  const reward = points.map((p) => [p.step, pick(p.values, 'reward/mean') ?? 0]);
  const refine = points
    .map((p) => [p.step, pick(p.values, 'refinement/success_rate')])
    .filter(([, v]) => v !== null);
  const series = [
    { name: 'train reward (mean of last 5 steps)', mark: '*', points: smooth(reward) },
    { name: 'refinement success', mark: 'o', points: smooth(refine) },
  ];
  out('');
  for (const row of asciiChart(series, { max: 1 })) out(`[demo] ${row}`);
  mkdirSync(stateDir, { recursive: true });
  const svgPath = path.join(stateDir, `demo-${jobId}.svg`);
  writeFileSync(svgPath, svgChart(series, { title: `${DEMO_JOB.name} (${jobId})` }));
  const refineMean = refine.length ? refine.reduce((a, p) => a + p[1], 0) / refine.length : null;
  out('');
  out(
    `[demo] pass@1 on ${after.n} held-out problems (greedy, same sample): ${pct(before.pass1)} → ${pct(after.pass1)}`,
  );
  out(
    `[demo]   before ${pct(before.pass1)} (95% CI ${pct(lo0)}–${pct(hi0)})   after ${pct(after.pass1)} (95% CI ${pct(lo1)}–${pct(hi1)})`,
  );
  out(`[demo]   ${verdict(before.records, after.records)}`);
  if (refineMean !== null)
    out(
      `[demo] refinement success (a refinement after the critique is correct): ${pct(refineMean)} on average`,
    );
  out('[demo] a few held-out problems, before → after:');
  for (const i of [0, 1, 2, 3]) {
    const b = before.records[i];
    const a = after.records.find((r) => r.row === b.row) ?? after.records[i];
    out(`[demo]   Q: ${oneLine(b.prompt.split('user\n').pop().split('\n')[0])}  (answer ${b.reference})`);
    out(`[demo]     before ${b.correct ? '✓' : '✗'} ${oneLine(b.response)}`);
    out(`[demo]     after  ${a.correct ? '✓' : '✗'} ${oneLine(a.response)}`);
  }
  out(
    `[demo] chart: ${path.relative(process.cwd(), svgPath)}   (${((Date.now() - t0) / 1000).toFixed(0)} s in all)`,
  );
  out('[demo] next: docs/quickstart.md (SFT → evaluate → Critique-GRPO with curl or the cgrpo CLI),');
  out(
    `[demo]   the trained model: curl -H "Authorization: Bearer $CGRPO_API_KEY" ${url}/v1/jobs/${jobId}/checkpoints/${final.id}/content -o model.tar`,
  );
  out('[demo] the runner stays up: POST more jobs to the API; Ctrl-C stops everything');
  return runner;
}
