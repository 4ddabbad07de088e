// `cgrpo jobs ...`: create from a JSON/YAML spec, list, inspect, control, follow live, metrics,
// compare two jobs, read rollouts.
import { readFileSync } from 'node:fs';
import { SingleBar } from 'cli-progress';
import { parse as parseYaml } from 'yaml';
import {
  type CgrpoClient,
  type JobEvent,
  type JobStatus,
  type MetricPoint,
  TERMINAL_JOB_STATUSES,
} from '../api';
import { CliError, fmt, printJson, table } from './common';

/** `jobs follow` exit codes: the job's outcome. */
export const FOLLOW_EXIT: Record<string, number> = { succeeded: 0, failed: 1, cancelled: 3 };

export function readSpec(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new CliError('spec_unreadable', `cannot read ${file}: ${(error as Error).message}`);
  }
  let spec: unknown;
  try {
    spec = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (error) {
    throw new CliError(
      'spec_invalid',
      `${file} is not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(error as Error).message}; fix the file (docs/api.md shows a job spec)`,
    );
  }
  if (!spec || typeof spec !== 'object' || Array.isArray(spec))
    throw new CliError('spec_invalid', `${file} must hold one job spec object`);
  return spec as Record<string, unknown>;
}

const progressOf = (j: { current_step: number | null; total_steps: number }) =>
  `${j.current_step ?? 0}/${j.total_steps}`;

export async function create(api: CgrpoClient, file: string, json: boolean, idempotencyKey?: string) {
  const job = await api.createJob(readSpec(file), idempotencyKey);
  if (json) return printJson(job);
  console.log(`created ${job.id} (${job.status})\nfollow it: cgrpo jobs follow ${job.id}`);
}

export async function list(api: CgrpoClient, opts: { status?: string; limit?: string }, json: boolean) {
  const page = await api.listJobs({
    status: opts.status,
    limit: opts.limit ? Number(opts.limit) : undefined,
  });
  if (json) return printJson(page);
  if (!page.data.length) return console.log('no jobs yet: cgrpo jobs create -f job.json');
  console.log(
    table(
      ['id', 'name', 'status', 'algorithm', 'step', 'created'],
      page.data.map((j) => [j.id, j.name, j.status, j.algorithm, progressOf(j), j.created_at]),
    ),
  );
}

export async function get(api: CgrpoClient, id: string, json: boolean) {
  const job = await api.getJob(id);
  if (json) return printJson(job);
  const { spec, ...rest } = job;
  console.log(
    table(
      ['field', 'value'],
      Object.entries(rest).map(([k, v]) => [
        k,
        typeof v === 'object' && v !== null ? JSON.stringify(v) : (v as string),
      ]),
    ),
  );
  console.log(`spec:\n${JSON.stringify(spec, null, 2)}`);
}

export async function control(
  api: CgrpoClient,
  id: string,
  action: 'cancel' | 'pause' | 'resume',
  json: boolean,
) {
  const job = await api.controlJob(id, action);
  if (json) return printJson(job);
  console.log(
    `${job.id}: ${job.status}${job.cancel_requested ? ' (cancel requested)' : ''}${job.pause_requested ? ' (pause requested)' : ''}`,
  );
}

interface FollowState {
  step: number;
  total: number;
  reward: number | null;
  pass: number | null;
  evalPass: number | null;
  stepSeconds: number | null;
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** One line for logs (non-TTY) and the screenshot: step, reward, pass@1, ETA. */
export function followLine(s: FollowState): string {
  const eta = s.stepSeconds !== null ? Math.max(0, (s.total - s.step) * s.stepSeconds) : null;
  return `step ${s.step}/${s.total} | reward ${fmt(s.reward)} | pass@1 ${fmt(s.pass)}${s.evalPass !== null ? ` (eval ${fmt(s.evalPass)})` : ''} | ETA ${eta === null ? '-' : `${Math.round(eta)}s`}`;
}

/**
 * Follows a job over SSE until it ends; returns its outcome's exit code (0 succeeded, 1 failed,
 * 3 cancelled). A TTY gets a progress bar; a pipe gets one line per step (or JSON lines with --json).
 */
export async function follow(api: CgrpoClient, id: string, json: boolean): Promise<number> {
  const job = await api.getJob(id);
  const s: FollowState = {
    step: job.current_step ?? 0,
    total: job.total_steps,
    reward: null,
    pass: null,
    evalPass: null,
    stepSeconds: null,
  };
  const tty = Boolean(process.stderr.isTTY) && !json;
  const bar = tty
    ? new SingleBar({
        format:
          ' {bar} step {value}/{total} | reward {reward} | pass@1 {pass} | ETA {eta_formatted} | {status}',
        hideCursor: true,
        etaBuffer: 5,
      })
    : null;
  bar?.start(s.total, s.step, { reward: '-', pass: '-', status: job.status });
  if (!tty && !json) console.log(`following ${job.id} (${job.name}), ${job.status}`);
  let status: JobStatus = job.status;
  let lastError: unknown = job.error;
  const seenSteps = new Set<number>();
  const onProgress = async (e: JobEvent) => {
    const step = num(e.data.step);
    if (step === null || seenSteps.has(step)) return;
    seenSteps.add(step);
    s.step = step;
    s.total = num(e.data.total_steps) ?? s.total;
    s.reward = num(e.data['reward/mean']) ?? s.reward;
    s.stepSeconds = num(e.data.step_seconds) ?? s.stepSeconds;
    if (step > 0) {
      const m = await api.metrics(id, { from_step: step, limit: 1, names: ['pass@1/train', 'eval/pass@1'] });
      const v = m.data.find((p) => p.step === step)?.values ?? {};
      s.pass = num(v['pass@1/train']) ?? s.pass;
      s.evalPass = num(v['eval/pass@1']) ?? s.evalPass;
    }
    if (json) process.stdout.write(`${JSON.stringify({ type: 'progress', job_id: id, ...s })}\n`);
    else if (bar) bar.update(s.step, { reward: fmt(s.reward), pass: fmt(s.pass), status });
    else if (s.step > 0) console.log(followLine(s));
  };
  for await (const e of api.stream(id)) {
    if (e.type === 'job.progress') await onProgress(e);
    else if (e.type.startsWith('job.')) {
      const next = e.type.slice(4);
      if ((['running', 'paused', 'succeeded', 'failed', 'cancelled', 'queued'] as string[]).includes(next))
        status = next as JobStatus;
      if (e.type === 'job.started') status = 'running';
      if (e.type === 'job.failed') lastError = e.data;
      if (json) process.stdout.write(`${JSON.stringify({ type: e.type, job_id: id, data: e.data })}\n`);
      else if (bar) bar.update(s.step, { status });
      else if (e.type !== 'job.log')
        console.log(`${e.type}${e.type === 'job.checkpoint' ? ` step ${e.data.step}` : ''}`);
    }
  }
  bar?.stop();
  const final = await api.getJob(id);
  status = final.status;
  if (!TERMINAL_JOB_STATUSES.includes(status))
    throw new CliError(
      'stream_ended',
      `the stream ended while ${id} is ${status}; run \`cgrpo jobs follow ${id}\` again`,
    );
  if (json)
    process.stdout.write(`${JSON.stringify({ type: 'done', job_id: id, status, error: final.error })}\n`);
  else console.log(`${id} ${status}${final.error ? `: ${final.error.code}: ${final.error.message}` : ''}`);
  void lastError;
  return FOLLOW_EXIT[status] ?? 1;
}

export function metricsCsv(points: MetricPoint[]): string {
  const names = [...new Set(points.flatMap((p) => Object.keys(p.values)))].sort();
  const esc = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const lines = [['step', 'attempt', ...names].map(esc).join(',')];
  for (const p of points)
    lines.push(
      [p.step, p.attempt, ...names.map((n) => p.values[n] ?? '')].map((v) => esc(String(v))).join(','),
    );
  return `${lines.join('\n')}\n`;
}

/** The headline metrics a table shows (all of them go to --csv and --json). */
export const HEADLINE = [
  'reward/mean',
  'pass@1/train',
  'eval/pass@1',
  'refinement/success_rate',
  'groups/zero_signal',
  'response_length/mean',
  'entropy',
  'loss',
  'grad_norm',
];

export async function metrics(
  api: CgrpoClient,
  id: string,
  opts: { csv?: boolean; names?: string },
  json: boolean,
) {
  const names = opts.names ? opts.names.split(',') : undefined;
  const points = await api.allMetrics(id, names);
  if (json) return printJson({ data: points });
  if (opts.csv) {
    process.stdout.write(metricsCsv(points));
    return;
  }
  if (!points.length) return console.log(`no metrics yet for ${id}: follow it with cgrpo jobs follow ${id}`);
  const cols = names ?? HEADLINE;
  console.log(
    table(
      ['step', ...cols],
      points.map((p) => [p.step, ...cols.map((c) => fmt(p.values[c]))]),
    ),
  );
}

export async function compare(
  api: CgrpoClient,
  a: string,
  b: string,
  opts: { names?: string },
  json: boolean,
) {
  const [ja, jb] = await Promise.all([api.getJob(a), api.getJob(b)]);
  const [ma, mb] = await Promise.all([api.allMetrics(a), api.allMetrics(b)]);
  const cols = opts.names ? opts.names.split(',') : HEADLINE;
  const last = (pts: MetricPoint[], n: string) =>
    [...pts].reverse().find((p) => p.values[n] != null)?.values[n] ?? null;
  const best = (pts: MetricPoint[], n: string) => {
    const vs = pts.map((p) => p.values[n]).filter((v): v is number => typeof v === 'number');
    return vs.length ? Math.max(...vs) : null;
  };
  const rows = cols.map((n) => ({
    metric: n,
    a_last: last(ma, n),
    b_last: last(mb, n),
    a_best: best(ma, n),
    b_best: best(mb, n),
  }));
  if (json)
    return printJson({
      a: { id: a, algorithm: ja.algorithm, status: ja.status },
      b: { id: b, algorithm: jb.algorithm, status: jb.status },
      metrics: rows,
    });
  const ha = `${ja.name} (${ja.algorithm})`;
  const hb = `${jb.name} (${jb.algorithm})`;
  console.log(
    table(
      ['metric', `${ha} last`, `${hb} last`, `${ha} max`, `${hb} max`],
      rows.map((r) => [r.metric, fmt(r.a_last), fmt(r.b_last), fmt(r.a_best), fmt(r.b_best)]),
    ),
  );
  console.log(`steps: ${ma.length} vs ${mb.length}; status: ${ja.status} vs ${jb.status}`);
}

export async function rollouts(
  api: CgrpoClient,
  id: string,
  opts: { step?: string; kind?: string; minReward?: string; maxReward?: string; limit?: string },
  json: boolean,
) {
  if (opts.step === undefined) {
    const steps = await api.rolloutSteps(id);
    if (json) return printJson(steps);
    return console.log(
      `steps with rollouts: ${JSON.stringify(steps.steps)}\nshow one: cgrpo jobs rollouts ${id} --step N`,
    );
  }
  const step = Number(opts.step);
  if (!Number.isInteger(step) || step < 0)
    throw new CliError('usage', `--step must be a step number, got '${opts.step}'`, 2);
  const res = await api.rollouts(id, {
    step,
    kind: opts.kind,
    min_reward: opts.minReward === undefined ? undefined : Number(opts.minReward),
    max_reward: opts.maxReward === undefined ? undefined : Number(opts.maxReward),
    limit: opts.limit ? Number(opts.limit) : undefined,
  });
  if (json) return printJson(res);
  for (const r of res.data) {
    console.log(`── ${r.kind ?? 'rollout'} · reward ${fmt(r.reward as number | null)}`);
    console.log(`prompt:    ${String(r.prompt ?? '').trim()}`);
    console.log(`response:  ${String(r.response ?? '').trim()}`);
    if (r.critique) console.log(`critique:  ${String(r.critique).trim()}`);
    if (r.refinement) console.log(`refinement: ${String(r.refinement).trim()}`);
  }
  if (!res.data.length) console.log(`no rollouts match at step ${step}`);
}
