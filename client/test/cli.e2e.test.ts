// `cgrpo` end to end: the real API under wrangler dev, a real CPU runner, the CLI as a child
// process (bin/cgrpo.mjs) with its own config file. login → jobs create (YAML) → jobs follow
// (exit code = outcome) → checkpoints download (sha256 checked) → metrics/compare/rollouts; and
// every route the typed client calls exists in the API's OpenAPI document.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  type LocalApi,
  registerRunner,
  startApi,
  startRunner,
  stopRunners,
  tinyJob,
} from '../../gpu-runner/test/harness';
import { CLIENT_ROUTES } from '../src/api';
import { runCgrpo } from './cli-run';

let api: LocalApi;
let dir: string;
let jobId: string;

/** `cgrpo ...args` in this file's folder (its own config file, no saved login). */
const cgrpo = (args: string[], env: Record<string, string> = {}) => runCgrpo(dir, args, env);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cgrpo-cli-'));
  api = await startApi();
}, 300_000);
afterEach((ctx) => stopRunners(ctx.task.result?.state === 'fail'));
afterAll(async () => {
  await api?.stop();
});

// Each CLI call is a Node process start (tsx compiles on the fly): slow on a loaded machine.
describe('cgrpo CLI against the local stack', { timeout: 180_000 }, () => {
  it('every route the typed client calls is in the OpenAPI document', async () => {
    const doc = (await (await fetch(`${api.url}/v1/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const missing = CLIENT_ROUTES.filter(([m, p]) => !doc.paths[p]?.[m]).map(([m, p]) => `${m} ${p}`);
    expect(missing).toEqual([]);
  });

  it('without a login, says how to log in', async () => {
    const r = await cgrpo(['jobs', 'list']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/not_logged_in: .*cgrpo login --api/);
  });

  it('login refuses a wrong key and says what to do; a right one is saved with mode 0600', async () => {
    const bad = await cgrpo(['login', '--api', api.url, '--key', 'cgrpo_sk_wrong']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/cgrpo login|CGRPO_API_KEY/);
    const ok = await cgrpo(['login', '--api', api.url, '--key', api.apiKey]);
    expect(ok.code, ok.err).toBe(0);
    const file = join(dir, 'config.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ api_url: api.url, api_key: api.apiKey });
    // env vars override the saved login
    const envBad = await cgrpo(['jobs', 'list'], { CGRPO_API_KEY: 'cgrpo_sk_wrong' });
    expect(envBad.code).toBe(1);
    expect(envBad.err).toMatch(/^cgrpo: unauthorized|401|invalid_api_key|cgrpo login/m);
  });

  it('jobs create -f job.yaml, jobs follow exits 0 when it succeeds, checkpoints download checks sha256', async () => {
    writeFileSync(join(dir, 'job.yaml'), stringify(tinyJob({ name: 'cli-e2e' })));
    const created = await cgrpo(['--json', 'jobs', 'create', '-f', 'job.yaml']);
    expect(created.code, created.err + created.out).toBe(0);
    jobId = (JSON.parse(created.out) as { id: string }).id;
    expect(jobId).toMatch(/^job_/);

    const { token } = registerRunner(api, 'cli-e2e');
    startRunner(api, token, { exitAfter: 1 });
    const followed = await cgrpo(['jobs', 'follow', jobId]);
    expect(followed.code, followed.err + followed.out).toBe(0);
    expect(followed.out).toMatch(/step 4\/4 \| reward [\d.-]+ \| pass@1 [\d.-]+/);
    expect(followed.out).toMatch(new RegExp(`${jobId} succeeded`));

    const list = await cgrpo(['--json', 'jobs', 'list']);
    expect((JSON.parse(list.out) as { data: { id: string; status: string }[] }).data[0]).toMatchObject({
      id: jobId,
      status: 'succeeded',
    });

    const dl = await cgrpo(['--json', 'checkpoints', 'download', jobId, '-o', 'final.tar']);
    expect(dl.code, dl.err + dl.out).toBe(0);
    const result = JSON.parse(dl.out) as { sha256: string; bytes: number; verified: boolean; path: string };
    const bytes = readFileSync(join(dir, 'final.tar'));
    expect(result.verified).toBe(true);
    expect(result.bytes).toBe(bytes.length);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(result.sha256);
  }, 480_000);

  it('metrics --csv has one row per step; compare and rollouts read the finished job', async () => {
    const csv = await cgrpo(['jobs', 'metrics', jobId, '--csv']);
    expect(csv.code, csv.err).toBe(0);
    const lines = csv.out.trim().split('\n');
    expect(lines[0]).toMatch(/^step,attempt,/);
    expect(lines.slice(1).map((l) => l.split(',')[0])).toEqual(['1', '2', '3', '4']);

    const cmp = await cgrpo(['--json', 'jobs', 'compare', jobId, jobId]);
    const rows = (JSON.parse(cmp.out) as { metrics: { metric: string; a_last: number; b_last: number }[] })
      .metrics;
    const reward = rows.find((r) => r.metric === 'reward/mean');
    expect(reward?.a_last).toBe(reward?.b_last);

    const ro = await cgrpo(['--json', 'jobs', 'rollouts', jobId, '--step', '1']);
    expect(ro.code, ro.err).toBe(0);
    const data = (JSON.parse(ro.out) as { data: { kind: string; prompt: string }[] }).data;
    expect(data.length).toBeGreaterThan(0);
    expect(data[0]?.prompt).toMatch(/=/);

    const missing = await cgrpo(['jobs', 'get', 'job_nope']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/not_found/);
  });
});
