// `cgrpo` end to end, the commands around a job: datasets upload (field mapping, content type,
// then a job trains on it), models upload (a HF folder as tar, byte-identical when downloaded),
// webhooks create|list|test|deliveries|redeliver against a loopback receiver that checks the
// signature with the SDK's verifyWebhook, runners list, SFT and evaluate jobs through `jobs create`,
// jobs compare, jobs rollouts --step, jobs metrics --csv; --json parsed for each, and each
// command's error path once (non-zero exit, a code, and what to do). Real API under wrangler dev,
// a real CPU runner, the CLI as a child process.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  DATASETS,
  freePort,
  type LocalApi,
  ROOT,
  registerRunner,
  startApi,
  startRunner,
  stopRunners,
  tinyJob,
  waitFor,
} from '../../gpu-runner/test/harness';
import { tarFolder } from '../src/commands/resources';
import { verifyWebhook } from '../src/webhooks';
import { type CliResult, parseJson, runCgrpo } from './cli-run';

const MODEL_DIR = join(ROOT, 'gpu-runner', 'models', 'tiny-qwen2');
let api: LocalApi;
let dir: string;
let receiver: Server;
let hookUrl: string;
const hooks: { headers: IncomingHttpHeaders; body: string }[] = [];

const cgrpo = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
  runCgrpo(dir, args, { CGRPO_API_URL: api.url, CGRPO_API_KEY: api.apiKey, ...env });

/** An artifact's bytes straight from the API (not through the CLI under test). */
async function artifactBytes(id: string): Promise<Buffer> {
  const res = await fetch(`${api.url}/v1/artifacts/${id}/content`, {
    headers: { authorization: `Bearer ${api.apiKey}` },
  });
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface Artifact {
  id: string;
  kind: string;
  size: number;
  rows: number | null;
  sha256: string;
  content_type: string;
  fields: Record<string, string> | null;
  job_spec: Record<string, unknown>;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cgrpo-cli-res-'));
  const port = await freePort();
  receiver = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      hooks.push({ headers: req.headers, body });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => receiver.listen(port, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${port}/hook`;
  api = await startApi();
}, 300_000);
afterEach((ctx) => stopRunners(ctx.task.result?.state === 'fail'));
afterAll(async () => {
  await api?.stop();
  receiver?.close();
});

// Each CLI call is a Node process start (tsx compiles on the fly): slow on a loaded machine.
describe('cgrpo CLI: data, models, webhooks, runners, SFT and evaluation', { timeout: 180_000 }, () => {
  let datasetId: string;
  let datasetSpec: { datasets: { train: Record<string, unknown> } };

  it('datasets upload maps fields, keeps the content type and stores every row; errors say what to do', async () => {
    // columns named differently from the defaults (prompt/answer)
    const rows = readFileSync(join(DATASETS, 'arith-train.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .slice(0, 12)
      .map((l) => JSON.parse(l) as { prompt: string; answer: string })
      .map((r) => JSON.stringify({ question: r.prompt, final: r.answer }));
    const text = `${rows.join('\n')}\n`;
    writeFileSync(join(dir, 'mapped.jsonl'), text);

    const missing = await cgrpo(['datasets', 'upload', 'nope.jsonl']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^cgrpo: file_not_found: nope\.jsonl does not exist: pass the path/m);

    // the default mapping (prompt/answer) does not fit these rows: the API names the line and field
    const unmapped = await cgrpo(['datasets', 'upload', 'mapped.jsonl']);
    expect(unmapped.code).toBe(1);
    expect(unmapped.err).toMatch(/line 1/);
    expect(unmapped.err).toMatch(/prompt/);

    const up = await cgrpo([
      '--json',
      'datasets',
      'upload',
      'mapped.jsonl',
      '--name',
      'mapped-arith',
      '--prompt-field',
      'question',
      '--reference-field',
      'final',
    ]);
    expect(up.code, up.err).toBe(0);
    const a = parseJson<Artifact>(up);
    expect(a).toMatchObject({
      kind: 'dataset',
      rows: 12,
      size: Buffer.byteLength(text),
      content_type: 'application/x-ndjson',
      fields: { prompt: 'question', reference: 'final' },
      sha256: sha256(Buffer.from(text)),
    });
    // the spec fragment to use it names the mapping (a job reads rows with its own fields)
    expect(a.job_spec).toEqual({
      datasets: {
        train: { uri: `artifact://${a.id}`, fields: { prompt: 'question', reference: 'final' } },
      },
    });
    datasetId = a.id;
    datasetSpec = a.job_spec as typeof datasetSpec;
    const stored = await api.request<Artifact>('GET', `/v1/artifacts/${a.id}`);
    expect(stored.body).toMatchObject({ rows: 12, fields: { prompt: 'question', reference: 'final' } });
    expect((await artifactBytes(a.id)).toString('utf8')).toBe(text);

    // the table output prints the same fragment for people
    const human = await cgrpo([
      'datasets',
      'upload',
      'mapped.jsonl',
      '--prompt-field',
      'question',
      '--reference-field',
      'final',
      '--content-type',
      'application/jsonl',
    ]);
    expect(human.code, human.err).toBe(0);
    const id2 = /art_[A-Za-z0-9]+/.exec(human.out)?.[0];
    expect(human.out).toContain(
      `"uri":"artifact://${id2}","fields":{"prompt":"question","reference":"final"}`,
    );
    expect((await api.request<Artifact>('GET', `/v1/artifacts/${id2}`)).body.content_type).toBe(
      'application/jsonl',
    );
  });

  it('models upload sends a HF folder as one tar, listed and downloadable byte for byte (single and multipart)', async () => {
    const notModel = await cgrpo(['models', 'upload', dir]);
    expect(notModel.code).toBe(1);
    expect(notModel.err).toMatch(/not_a_model: .*config\.json not found: pass a Hugging Face model folder/);
    const badSize = await cgrpo(['models', 'upload', MODEL_DIR, '--multipart-over', '1MB']);
    expect(badSize.code).toBe(2);
    expect(badSize.err).toMatch(/^cgrpo: usage: --multipart-over must be a number of bytes/m);

    const single = parseJson<Artifact>(await cgrpo(['--json', 'models', 'upload', MODEL_DIR]));
    const parts = parseJson<Artifact>(
      await cgrpo([
        '--json',
        'models',
        'upload',
        MODEL_DIR,
        '--name',
        'tq2-parts',
        '--multipart-over',
        '1024',
      ]),
    );
    expect(single).toMatchObject({ kind: 'model', content_type: 'application/x-tar', rows: null });
    expect(single.job_spec).toEqual({ model: { id: `artifact://${single.id}` } });
    expect(parts.sha256).toBe(single.sha256);

    const listed = await api.request<{ data: Artifact[] }>('GET', '/v1/artifacts?kind=model');
    expect(listed.body.data.map((x) => x.id)).toEqual(expect.arrayContaining([single.id, parts.id]));
    expect(listed.body.data.find((x) => x.id === single.id)).toMatchObject({ name: 'tiny-qwen2' });

    for (const id of [single.id, parts.id]) {
      const tar = await artifactBytes(id);
      expect(sha256(tar)).toBe(single.sha256);
      expect(tar.equals(Buffer.from(tarFolder(MODEL_DIR)))).toBe(true);
      // unpacked by the system tar, every file is the original
      const out = join(dir, `unpacked-${id}`);
      mkdirSync(out);
      writeFileSync(join(out, '..', `${id}.tar`), tar);
      const x = spawnSync('tar', ['-xf', join(dir, `${id}.tar`), '-C', out], { encoding: 'utf8' });
      expect(x.status, x.stderr).toBe(0);
      const names = readdirSync(MODEL_DIR).sort();
      expect(readdirSync(out).sort()).toEqual(names);
      for (const n of names)
        expect(readFileSync(join(out, n)).equals(readFileSync(join(MODEL_DIR, n)))).toBe(true);
    }
  });

  it('webhooks create|list|test|deliveries|redeliver: signed deliveries reach a loopback receiver', async () => {
    const bad = await cgrpo(['webhooks', 'create', '--url', 'not a url']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^cgrpo: \w+: /m);
    expect(bad.err).toMatch(/url/);

    const created = await cgrpo([
      '--json',
      'webhooks',
      'create',
      '--url',
      hookUrl,
      '--description',
      'cli e2e',
    ]);
    expect(created.code, created.err).toBe(0);
    const ep = parseJson<{ id: string; secret: string; url: string }>(created);
    expect(ep.secret).toMatch(/^whsec_/);

    const listed = parseJson<{ data: { id: string; url: string }[] }>(
      await cgrpo(['--json', 'webhooks', 'list']),
    );
    expect(listed.data).toContainEqual(expect.objectContaining({ id: ep.id, url: hookUrl }));
    const table = await cgrpo(['webhooks', 'list']);
    expect(table.out).toContain(ep.id);

    const sent = await cgrpo(['--json', 'webhooks', 'test', ep.id]);
    expect(sent.code, sent.err).toBe(0);
    const delivery = parseJson<{ id: string; event_type: string }>(sent);
    expect(delivery.event_type).toBe('webhook.test');

    // Deliveries go out through the Queue; the cron (run here on demand) re-enqueues late ones.
    const first = await waitFor(
      'the test event at the receiver',
      async () => {
        await api.cron();
        return hooks.find((h) => h.body.includes('webhook.test'));
      },
      120_000,
      1000,
    );
    const event = await verifyWebhook(ep.secret, first.headers, first.body);
    expect(event.type).toBe('webhook.test');
    // a wrong secret does not verify: the check can fail
    await expect(
      verifyWebhook(`whsec_${Buffer.from('x'.repeat(32)).toString('base64')}`, first.headers, first.body),
    ).rejects.toMatchObject({ code: 'no_matching_signature' });

    const deliveries = await waitFor(
      'the delivery marked delivered',
      async () => {
        const d = parseJson<{ data: { id: string; status: string; attempts: number }[] }>(
          await cgrpo(['--json', 'webhooks', 'deliveries', ep.id]),
        );
        return d.data.find((x) => x.id === delivery.id && x.status === 'delivered') ? d : null;
      },
      120_000,
      1000,
    );
    expect(deliveries.data.length).toBeGreaterThanOrEqual(1);
    const human = await cgrpo(['webhooks', 'deliveries', ep.id]);
    expect(human.out).toMatch(new RegExp(`${delivery.id}.*webhook\\.test.*delivered`));

    const before = hooks.length;
    const re = await cgrpo(['--json', 'webhooks', 'redeliver', delivery.id]);
    expect(re.code, re.err).toBe(0);
    expect(parseJson<{ id: string }>(re).id).toBe(delivery.id);
    const again = await waitFor(
      'the redelivery at the receiver',
      async () => {
        await api.cron();
        return hooks.length > before ? hooks[hooks.length - 1] : null;
      },
      120_000,
      1000,
    );
    // same webhook-id (receivers deduplicate on it), signed again
    expect(again.headers['webhook-id']).toBe(first.headers['webhook-id']);
    expect((await verifyWebhook(ep.secret, again.headers, again.body)).type).toBe('webhook.test');

    const missing = await cgrpo(['webhooks', 'deliveries', 'we_nope']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/not_found/);
    const missingRe = await cgrpo(['--json', 'webhooks', 'redeliver', 'whd_nope']);
    expect(missingRe.code).toBe(1);
    expect(parseJson<{ error: { code: string } }>(missingRe).error.code).toBe('not_found');
  });

  it('runners list shows a registered runner; a refused key says what to do', async () => {
    const { runnerId } = registerRunner(api, 'cli-runners-list', ['cpu-e2e']);
    const r = parseJson<{ data: { id: string; name: string; labels: string[] }[] }>(
      await cgrpo(['--json', 'runners', 'list']),
    );
    expect(r.data).toContainEqual(expect.objectContaining({ id: runnerId, name: 'cli-runners-list' }));
    const human = await cgrpo(['runners', 'list']);
    expect(human.out).toMatch(/cli-runners-list/);
    const refused = await cgrpo(['runners', 'list'], { CGRPO_API_KEY: 'cgrpo_sk_wrong' });
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/cgrpo login|CGRPO_API_KEY/);
  });

  it('jobs create runs a job on the uploaded dataset, an SFT job and an evaluation of its checkpoint; compare, rollouts, metrics --csv', async () => {
    const missingSpec = await cgrpo(['jobs', 'create', '-f', 'nope.json']);
    expect(missingSpec.code).toBe(1);
    expect(missingSpec.err).toMatch(/^cgrpo: spec_unreadable: cannot read nope\.json/m);
    // a spec problem comes back with the field and what to do
    writeFileSync(
      join(dir, 'bad-sft.json'),
      JSON.stringify({
        algorithm: 'sft',
        model: { id: 'starter' },
        datasets: { train: { uri: 'file:examples/datasets/arithmetic/train.jsonl' } },
        critic: { plugin: 'builtin:ground-truth' },
      }),
    );
    const refused = await cgrpo(['jobs', 'create', '-f', 'bad-sft.json']);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/^ {2}critic: only used by algorithm 'critique-grpo'/m);

    // 1. Critique-GRPO on the dataset uploaded above, with the fragment the CLI printed
    const onUpload = tinyJob(
      { name: 'cli on upload', datasets: { ...datasetSpec.datasets } },
      { total_steps: 2 },
    );
    delete (onUpload as { evaluation?: unknown }).evaluation;
    writeFileSync(join(dir, 'on-upload.json'), JSON.stringify(onUpload));
    // 2. SFT on the starter model (docs/quickstart.md, scaled down)
    writeFileSync(
      join(dir, 'sft.json'),
      JSON.stringify({
        name: 'cli sft',
        algorithm: 'sft',
        model: { id: 'starter', adapter: { type: 'full' } },
        datasets: {
          train: {
            uri: 'file:examples/datasets/arithmetic/train.jsonl',
            fields: { completion: 'solution' },
            limit: 16,
          },
          validation: { uri: 'file:examples/datasets/arithmetic/validation.jsonl', limit: 2 },
        },
        verifier: { plugin: 'builtin:math' },
        evaluation: { every_steps: 0, at_end: true, max_prompts: 2 },
        hyperparameters: {
          prompts_per_step: 4,
          total_steps: 3,
          learning_rate: 0.0003,
          max_response_tokens: 24,
        },
      }),
    );
    const ids: string[] = [];
    for (const f of ['on-upload.json', 'sft.json']) {
      const c = await cgrpo(['--json', 'jobs', 'create', '-f', f]);
      expect(c.code, c.err + c.out).toBe(0);
      ids.push(parseJson<{ id: string }>(c).id);
    }
    const [uploadJob, sftJob] = ids as [string, string];
    const { token } = registerRunner(api, 'cli-resources');
    startRunner(api, token);
    for (const id of ids) {
      const f = await cgrpo(['jobs', 'follow', id]);
      expect(f.code, f.err + f.out).toBe(0);
      expect(f.out).toContain(`${id} succeeded`);
    }
    expect(datasetId).toMatch(/^art_/);

    // 3. evaluate the SFT job's final checkpoint
    const ckpts = parseJson<{ data: { id: string; final: boolean; step: number }[] }>(
      await cgrpo(['--json', 'checkpoints', 'list', sftJob]),
    );
    const final = ckpts.data.find((c) => c.final);
    expect(final?.step).toBe(3);
    writeFileSync(
      join(dir, 'eval.yaml'),
      [
        'name: cli evaluate',
        'algorithm: evaluate',
        `model: { id: "checkpoint:${final?.id}" }`,
        'datasets: { train: { uri: "file:examples/datasets/arithmetic/validation.jsonl", limit: 3 } }',
        'verifier: { plugin: "builtin:math" }',
        'evaluation: { samples_per_prompt: 2, temperature: 1, max_prompts: null }',
        'hyperparameters: { max_response_tokens: 16 }',
        '',
      ].join('\n'),
    );
    const ev = await cgrpo(['--json', 'jobs', 'create', '-f', 'eval.yaml']);
    expect(ev.code, ev.err + ev.out).toBe(0);
    const evalJob = parseJson<{ id: string; algorithm: string }>(ev);
    expect(evalJob.algorithm).toBe('evaluate');
    const fe = await cgrpo(['--json', 'jobs', 'follow', evalJob.id]);
    expect(fe.code, fe.err + fe.out).toBe(0);
    const lines = fe.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; status?: string });
    expect(lines.at(-1)).toMatchObject({ type: 'done', status: 'succeeded' });

    // metrics --csv: SFT has one row per step with its loss; evaluation one row at step 0
    const csv = await cgrpo(['jobs', 'metrics', sftJob, '--csv']);
    expect(csv.code, csv.err).toBe(0);
    const [header, ...rows] = csv.out.trim().split('\n');
    const cols = header?.split(',') ?? [];
    expect(cols.slice(0, 2)).toEqual(['step', 'attempt']);
    expect(cols).toContain('train/loss');
    expect(rows.map((r) => r.split(',')[0])).toEqual(['1', '2', '3']);
    const lossAt = cols.indexOf('train/loss');
    for (const r of rows) expect(Number(r.split(',')[lossAt])).toBeGreaterThan(0);
    const evMetrics = parseJson<{ data: { step: number; values: Record<string, number> }[] }>(
      await cgrpo(['--json', 'jobs', 'metrics', evalJob.id]),
    );
    expect(evMetrics.data.map((p) => p.step)).toEqual([0]);
    expect(evMetrics.data[0]?.values['eval/samples']).toBe(6);

    // rollouts --step: the evaluation's responses with their verdicts; a bad step is a usage error
    const ro = parseJson<{ data: { kind: string; reward: number | null; prompt: string }[] }>(
      await cgrpo(['--json', 'jobs', 'rollouts', evalJob.id, '--step', '0', '--limit', '100']),
    );
    expect(ro.data).toHaveLength(6);
    for (const r of ro.data) {
      expect(r.kind).toBe('evaluation');
      expect(r.reward).toEqual(expect.any(Number));
    }
    const badStep = await cgrpo(['jobs', 'rollouts', evalJob.id, '--step', 'x']);
    expect(badStep.code).toBe(2);
    expect(badStep.err).toMatch(/--step must be a step number/);

    // compare: the job on the uploaded data against the SFT job
    const cmp = parseJson<{
      a: { id: string; algorithm: string };
      b: { id: string; algorithm: string };
      metrics: { metric: string; a_last: number | null; b_last: number | null }[];
    }>(await cgrpo(['--json', 'jobs', 'compare', uploadJob, sftJob, '--names', 'reward/mean,train/loss']));
    expect(cmp.a).toMatchObject({ id: uploadJob, algorithm: 'critique-grpo' });
    expect(cmp.b).toMatchObject({ id: sftJob, algorithm: 'sft' });
    expect(cmp.metrics.find((m) => m.metric === 'reward/mean')?.a_last).toEqual(expect.any(Number));
    expect(cmp.metrics.find((m) => m.metric === 'train/loss')?.b_last).toEqual(expect.any(Number));
    const human = await cgrpo(['jobs', 'compare', uploadJob, sftJob]);
    expect(human.out).toMatch(/cli on upload \(critique-grpo\) last/);
    expect(human.out).toMatch(/cli sft \(sft\) last/);
    const cmpMissing = await cgrpo(['jobs', 'compare', uploadJob, 'job_nope']);
    expect(cmpMissing.code).toBe(1);
    expect(cmpMissing.err).toMatch(/not_found.*cgrpo jobs list/);
  }, 600_000);
});
