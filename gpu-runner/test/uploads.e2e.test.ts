// What users upload, used by a real runner on CPU with nothing mocked. Plugins: the real `cgrpo`
// CLI scaffolds, builds, tests and publishes them to the real API (wrangler dev, local D1 + R2),
// a real runner process downloads them by sha256 and runs them in the plugin sandbox, and the
// critic's ctx.llm.chat reaches a scripted OpenAI-compatible server over loopback HTTP (the stand-in
// for a judge model: no model server can run here). A hostile plugin fails its job with
// plugin_error naming it, and the same runner process goes on to train the next job. Models: a
// tar.gz of a checkpoint folder uploaded as an artifact trains like a local one.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ChatServer, startChatServer } from '../../plugins/builtin/critics/chat-server';
import {
  type LocalApi,
  ROOT,
  registerRunner,
  startApi,
  startRunner,
  stopRunners,
  tinyJob,
  waitFor,
} from './harness';

const CGRPO = join(ROOT, 'client', 'bin', 'cgrpo.mjs');
const work = mkdtempSync(join(tmpdir(), 'cgrpo-plugins-e2e-'));

let api: LocalApi;
let chat: ChatServer;

beforeAll(async () => {
  [api, chat] = await Promise.all([
    startApi({ leaseSeconds: 20 }),
    startChatServer({ content: 'Step 2 is wrong: the sum is off by one.' }),
  ]);
}, 120_000);

afterEach((ctx) => stopRunners(ctx.task.result?.state === 'fail'));

afterAll(async () => {
  await Promise.all([api?.stop(), chat?.close()]);
});

/** `cgrpo plugins ...` as a user runs it, against the local API. */
function cgrpo(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, ['--no-node-snapshot', CGRPO, 'plugins', ...args], {
    cwd: work,
    encoding: 'utf8',
    env: { ...process.env, CGRPO_API_URL: api.url, CGRPO_API_KEY: api.apiKey },
  });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

function editJson(file: string, edit: (v: Record<string, unknown>) => Record<string, unknown>) {
  writeFileSync(file, JSON.stringify(edit(JSON.parse(readFileSync(file, 'utf8'))), null, 2));
}

interface Job {
  id: string;
  status: string;
  runner_id: string | null;
  error: { code: string; message: string } | null;
}

async function submit(spec: Record<string, unknown>): Promise<string> {
  const res = await api.request<{ id: string }>('POST', '/v1/jobs', spec);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.id;
}

function finished(id: string, timeoutMs = 150_000): Promise<Job> {
  return waitFor(
    `job ${id} to finish`,
    async () => {
      const j = (await api.request<Job>('GET', `/v1/jobs/${id}`)).body;
      return ['succeeded', 'failed', 'cancelled'].includes(j.status) ? j : null;
    },
    timeoutMs,
    500,
  );
}

describe('published plugins in a job', () => {
  it('init → build → test → publish → a runner trains with them; a hostile plugin fails only its own job', async () => {
    // 1. a verifier from the scaffold, as is
    const verifierDir = join(work, 'answer-check');
    expect(
      cgrpo('init', 'answer-check', '--kind', 'verifier', '--owner', 'e2e', '--dir', verifierDir).code,
    ).toBe(0);
    const tested = cgrpo('test', '--dir', verifierDir, '--input', join(verifierDir, 'samples.jsonl'));
    expect(tested.out).toContain('2 passed, 0 failed');
    expect(tested.code).toBe(0);
    const published = cgrpo('publish', '--dir', verifierDir);
    expect(published.out).toMatch(/published e2e\/answer-check@0\.1\.0 sha256 [0-9a-f]{64}/);

    // 2. the examples' rubric critic (ctx.llm.chat) and shaping, under this account's name
    for (const example of ['rubric-critic', 'sharpened-shaping']) {
      const dir = join(work, example);
      cpSync(join(ROOT, 'examples', 'plugins', example), dir, { recursive: true });
      editJson(join(dir, 'plugin.json'), (p) => ({ ...p, name: `e2e/${example}` }));
      const out = cgrpo('publish', '--dir', dir);
      expect(out.out).toMatch(new RegExp(`published e2e/${example}@1\\.0\\.0`));
    }

    // 3. a hostile verifier: never returns
    const spinDir = join(work, 'spin');
    cgrpo('init', 'spin', '--kind', 'verifier', '--owner', 'e2e', '--dir', spinDir);
    writeFileSync(
      join(spinDir, 'src', 'index.ts'),
      `import { defineVerifier } from '@cgrpo/plugins/sdk';\nexport default defineVerifier({ verify() { for (;;) {} } });\n`,
    );
    editJson(join(spinDir, 'plugin.json'), (p) => ({ ...p, limits: { timeout_ms: 300, memory_mb: 32 } }));
    expect(cgrpo('publish', '--dir', spinDir).out).toMatch(/published e2e\/spin@0\.1\.0/);

    // 4. another: allocates without end
    const hogDir = join(work, 'hog');
    cgrpo('init', 'hog', '--kind', 'verifier', '--owner', 'e2e', '--dir', hogDir);
    writeFileSync(
      join(hogDir, 'src', 'index.ts'),
      `import { defineVerifier } from '@cgrpo/plugins/sdk';\nconst kept: unknown[] = [];\nexport default defineVerifier({ verify() { for (;;) kept.push(new Array(1 << 20).fill(kept.length)); } });\n`,
    );
    editJson(join(hogDir, 'plugin.json'), (p) => ({ ...p, limits: { timeout_ms: 20_000, memory_mb: 32 } }));
    expect(cgrpo('publish', '--dir', hogDir).out).toMatch(/published e2e\/hog@0\.1\.0/);

    // the hostile jobs first, then the real one: one runner takes all three, in order
    const noEval = { every_steps: 0, at_end: false };
    const hog = await submit(
      tinyJob({ name: 'hog', verifier: { plugin: 'e2e/hog@0.1.0' }, evaluation: noEval }),
    );
    const hostile = await submit(
      tinyJob({
        name: 'hostile',
        verifier: { plugin: 'e2e/spin@0.1.0' },
        evaluation: { every_steps: 0, at_end: false },
      }),
    );
    const good = await submit(
      tinyJob(
        {
          name: 'own-plugins',
          verifier: { plugin: 'e2e/answer-check@0.1.0', config: { ignore_case: true } },
          critic: {
            plugin: 'e2e/rubric-critic@1.0.0',
            config: { rubric: 'Name the first wrong step.' },
            grants: ['llm.chat'],
            llm: { endpoint_url: chat.url, model: 'judge', token_env: 'E2E_JUDGE_TOKEN', max_tokens: 32 },
          },
          shaping: { plugin: 'e2e/sharpened-shaping@1.0.0', config: { params: { gamma: 0.2 } } },
          checkpoint_every: 0,
        },
        { total_steps: 2 },
      ),
    );

    const { token, runnerId } = registerRunner(api, 'e2e-plugins');
    // the judge's token lives in the runner's environment only (startRunner passes process.env on)
    process.env.E2E_JUDGE_TOKEN = 'judge-secret';
    const runner = startRunner(api, token, { exitAfter: 3 });
    const hogged = await finished(hog);
    expect(hogged.status).toBe('failed');
    expect(hogged.error?.code).toBe('plugin_error');
    expect(hogged.error?.message).toMatch(/plugin e2e\/hog@0\.1\.0: memory: /);
    const failed = await finished(hostile);
    expect(failed.status).toBe('failed');
    expect(failed.error?.code).toBe('plugin_error');
    expect(failed.error?.message).toMatch(/plugin e2e\/spin@0\.1\.0: timeout: /);

    const done = await finished(good);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    // the same runner process took both jobs and exits cleanly after them
    expect(hogged.runner_id).toBe(runnerId);
    expect(failed.runner_id).toBe(runnerId);
    expect(done.runner_id).toBe(runnerId);
    expect(await runner.exited).toBe(0);
    // the default engine is QuickJS (its memory limit bounds the runner; docs/plugins.md)
    expect(runner.log()).toMatch(/"msg":"plugin loaded in the sandbox".*"engine":"quickjs"/);

    // the sandboxed plugins really ran: verifier calls, critiques from the judge, its token sent
    const points = (
      await api.request<{ data: { step: number; values: Record<string, number | null> }[] }>(
        'GET',
        `/v1/jobs/${good}/metrics`,
      )
    ).body.data;
    expect(points.map((p) => p.step).sort()).toEqual([1, 2]);
    expect(points[0].values['verifier/calls']).toBeGreaterThan(0);
    expect(points[0].values['verifier/failures']).toBe(0);
    expect(points[0].values['critique/calls']).toBeGreaterThan(0);
    expect(points[0].values['critique/failures']).toBe(0);
    const judged = chat.requests.filter((r) => r.body.messages[0]?.content === 'Name the first wrong step.');
    expect(judged.length).toBeGreaterThan(0);
    expect(judged[0].headers.authorization).toBe('Bearer judge-secret');
    expect(judged[0].body.max_tokens).toBe(32);
    const rollouts = await api.request<{ data: { kind: string; critique?: string | null }[] }>(
      'GET',
      `/v1/jobs/${good}/rollouts?step=1`,
    );
    expect(rollouts.body.data.some((r) => r.critique === 'Step 2 is wrong: the sum is off by one.')).toBe(
      true,
    );
    const events = await api.request<{ data: { type: string; data: Record<string, unknown> }[] }>(
      'GET',
      `/v1/jobs/${good}/events?limit=500`,
    );
    const loaded = events.body.data.find((e) => e.type === 'job.progress' && e.data.phase === 'plugins');
    expect(loaded?.data.sandboxed).toEqual([
      'verifier: e2e/answer-check@0.1.0',
      'critic: e2e/rubric-critic@1.0.0',
      'shaping: e2e/sharpened-shaping@1.0.0',
    ]);
  }, 300_000);
});

describe('uploaded models', () => {
  it('a tar.gz of the model folder uploaded as an artifact trains like a local model', async () => {
    const archive = join(work, 'tiny.tgz');
    const made = spawnSync('tar', [
      '-czf',
      archive,
      '-C',
      join(ROOT, 'gpu-runner', 'models', 'tiny-llama'),
      '.',
    ]);
    expect(made.status).toBe(0);
    const res = await fetch(`${api.url}/v1/artifacts?name=tiny-llama.tgz&kind=model`, {
      method: 'POST',
      headers: { authorization: `Bearer ${api.apiKey}` },
      body: readFileSync(archive),
    });
    expect(res.status).toBe(201);
    const artifact = (await res.json()) as { id: string };
    const id = await submit(
      tinyJob(
        { name: 'uploaded-model', model: { id: `artifact://${artifact.id}` }, checkpoint_every: 0 },
        { total_steps: 1 },
      ),
    );
    const { token } = registerRunner(api, 'e2e-models');
    const runner = startRunner(api, token, { exitAfter: 1 });
    const done = await finished(id);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(await runner.exited).toBe(0);
    expect(runner.log()).toMatch(new RegExp(`"msg":"model artifact ready".*"artifact":"${artifact.id}"`));
  }, 120_000);
});
