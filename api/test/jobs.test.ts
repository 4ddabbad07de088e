import { describe, expect, it } from 'vitest';
import { call, expectJson, type JobBody, newAccount, newRunner, submitJob } from './helpers';

type ErrorBody = { error: { code: string; message: string; fields: { path: string; message: string }[] } };

describe('POST /v1/jobs', () => {
  it('stores the resolved spec with every default and queues the job with a job.queued event', async () => {
    const account = await newAccount();
    const job = await submitJob(account, { hyperparameters: { group_size: 4 } });
    expect(job.id).toMatch(/^job_/);
    expect(job.status).toBe('queued');
    expect(job.attempt).toBe(0);
    expect(job.spec.hyperparameters).toMatchObject({
      group_size: 4,
      prompts_per_step: 128,
      refinements_per_group: 1,
      refine_trigger: 'all_incorrect',
      learning_rate: 1e-6,
      max_response_tokens: 8192,
    });
    expect(job.spec.shaping).toEqual({
      plugin: 'builtin:expression',
      config: { expression: 'p / (p + gamma)', params: { gamma: 0.1 } },
      grants: [],
    });
    const fetched = await expectJson<JobBody>(`/v1/jobs/${job.id}`, 200, { key: account.apiKey });
    expect(fetched.spec).toEqual(job.spec);
    const events = await expectJson<{ data: { type: string }[] }>(`/v1/jobs/${job.id}/events`, 200, {
      key: account.apiKey,
    });
    expect(events.data.map((e) => e.type)).toEqual(['job.queued', 'job.warning']); // no runner: job-warnings.test.ts
  });

  it('rejects unknown fields and bad values with exact paths', async () => {
    const account = await newAccount();
    const unknown = await expectJson<ErrorBody>('/v1/jobs', 400, {
      key: account.apiKey,
      json: {
        model: { id: 'Qwen/Qwen3-0.6B', adapter: { type: 'lora', rnak: 8 } },
        datasets: { train: { uri: 'https://example.test/t.jsonl' } },
        hyperparameters: { group_size: 1, learning_rat: 1e-5 },
      },
    });
    expect(unknown.error.code).toBe('invalid_request');
    expect(unknown.error.fields).toEqual(
      expect.arrayContaining([
        { path: 'model.adapter.rnak', message: 'unknown field (check the spelling)' },
        { path: 'hyperparameters.learning_rat', message: 'unknown field (check the spelling)' },
        { path: 'hyperparameters.group_size', message: 'must be >= 2, got 1' },
      ]),
    );
    const cross = await expectJson<ErrorBody>('/v1/jobs', 400, {
      key: account.apiKey,
      json: {
        algorithm: 'grpo',
        model: { id: 'm' },
        datasets: { train: { uri: 'https://example.test/t.jsonl' } },
        critic: { plugin: 'builtin:indicative' },
      },
    });
    expect(cross.error.fields).toEqual([
      { path: 'critic', message: "only used by algorithm 'critique-grpo'; remove it" },
    ]);
  });

  it('checks references: artifacts, plugin kinds and the shaping expression', async () => {
    const account = await newAccount();
    const res = await expectJson<ErrorBody>('/v1/jobs', 400, {
      key: account.apiKey,
      json: {
        model: { id: 'Qwen/Qwen3-0.6B' },
        datasets: { train: { uri: 'artifact://art_missing' } },
        verifier: { plugin: 'builtin:ground-truth' },
        critic: { plugin: 'acme/critic@1.0.0' },
        shaping: {
          plugin: 'builtin:expression',
          config: { expression: 'p / (p + gama)', params: { gamma: 0.1 } },
        },
      },
    });
    const byPath = Object.fromEntries(res.error.fields.map((f) => [f.path, f.message]));
    expect(Object.keys(byPath).sort()).toEqual([
      'critic.plugin',
      'datasets.train.uri',
      'shaping.config.expression',
      'verifier.plugin',
    ]);
    expect(byPath['verifier.plugin']).toContain('is a critic, not a verifier');
    expect(byPath['datasets.train.uri']).toContain('art_missing not found');
    expect(byPath['shaping.config.expression']).toContain('gama');
  });

  it('takes an uploaded model only if the artifact is a model', async () => {
    const account = await newAccount();
    const up = async (kind: string) => {
      const res = await call(`/v1/artifacts?name=m.tgz&kind=${kind}`, {
        method: 'POST',
        key: account.apiKey,
        body: new Uint8Array([31, 139, 8, 0]),
      });
      expect(res.status).toBe(201);
      return ((await res.json()) as { id: string }).id;
    };
    const [model, file] = [await up('model'), await up('file')];
    const submit = (id: string, status: number) =>
      expectJson<ErrorBody & { spec: { model: { id: string } } }>('/v1/jobs', status, {
        key: account.apiKey,
        json: {
          model: { id: `artifact://${id}` },
          datasets: { train: { uri: 'https://example.test/t.jsonl' } },
        },
      });
    expect((await submit(model, 201)).spec.model.id).toBe(`artifact://${model}`);
    expect((await submit(file, 400)).error.fields).toEqual([
      { path: 'model.id', message: `artifact ${file} is a file, not a model` },
    ]);
    expect((await submit('art_nothere', 400)).error.fields[0].message).toContain(
      'POST /v1/artifacts?kind=model',
    );
  });

  it('refuses a per-job webhook URL the delivery engine would refuse', async () => {
    const account = await newAccount();
    const res = await expectJson<ErrorBody>('/v1/jobs', 400, {
      key: account.apiKey,
      json: {
        model: { id: 'm' },
        datasets: { train: { uri: 'https://example.test/t.jsonl' } },
        webhook: { url: 'http://10.0.0.1/hook' },
      },
    });
    expect(res.error.fields.map((f) => f.path)).toEqual(['webhook.url']);
  });

  it('honours Idempotency-Key: same key and spec → the same job; other spec → 409', async () => {
    const account = await newAccount();
    const headers = { 'idempotency-key': 'retry-1' };
    const first = await submitJob(account, {}, headers);
    const again = await expectJson<JobBody>('/v1/jobs', 200, {
      key: account.apiKey,
      json: {
        name: 'test job',
        model: { id: 'Qwen/Qwen3-0.6B' },
        datasets: { train: { uri: 'https://example.test/train.jsonl' } },
      },
      headers,
    });
    expect(again.id).toBe(first.id);
    const conflict = await expectJson<ErrorBody>('/v1/jobs', 409, {
      key: account.apiKey,
      json: {
        name: 'other',
        model: { id: 'Qwen/Qwen3-0.6B' },
        datasets: { train: { uri: 'https://example.test/train.jsonl' } },
      },
      headers,
    });
    expect(conflict.error.code).toBe('idempotency_key_reused');
    const list = await expectJson<{ data: unknown[] }>('/v1/jobs', 200, { key: account.apiKey });
    expect(list.data).toHaveLength(1);
  });
});

describe('GET /v1/jobs', () => {
  it('pages with a cursor, newest first, and filters by status', async () => {
    const account = await newAccount();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await submitJob(account, { name: `job ${i}` })).id);
    await expectJson(`/v1/jobs/${ids[1]}/cancel`, 200, { key: account.apiKey, method: 'POST' });

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor ? `?limit=2&cursor=${cursor}` : '?limit=2';
      const page: { data: { id: string }[]; next_cursor: string | null } = await expectJson(
        `/v1/jobs${query}`,
        200,
        {
          key: account.apiKey,
        },
      );
      seen.push(...page.data.map((j) => j.id));
      cursor = page.next_cursor;
      pages += 1;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual([...ids].reverse());

    const cancelled = await expectJson<{ data: { id: string; status: string }[] }>(
      '/v1/jobs?status=cancelled',
      200,
      {
        key: account.apiKey,
      },
    );
    expect(cancelled.data.map((j) => j.id)).toEqual([ids[1]]);
    const queued = await expectJson<{ data: unknown[] }>('/v1/jobs?status=queued,running', 200, {
      key: account.apiKey,
    });
    expect(queued.data).toHaveLength(4);
    const bad = await expectJson<ErrorBody>('/v1/jobs?status=done', 400, { key: account.apiKey });
    expect(bad.error.fields[0]?.path).toBe('query.status');
    await expectJson('/v1/jobs?cursor=garbage', 400, { key: account.apiKey });
  });
});

describe('job control', () => {
  it('cancels a queued job at once; a cancelled job cannot be cancelled again', async () => {
    const account = await newAccount();
    const job = await submitJob(account);
    const cancelled = await expectJson<JobBody>(`/v1/jobs/${job.id}/cancel`, 200, {
      key: account.apiKey,
      method: 'POST',
    });
    expect(cancelled.status).toBe('cancelled');
    const again = await expectJson<ErrorBody>(`/v1/jobs/${job.id}/cancel`, 409, {
      key: account.apiKey,
      method: 'POST',
    });
    expect(again.error.code).toBe('job_finished');
  });

  it('pauses and resumes a queued job, with events for each', async () => {
    const account = await newAccount();
    await newRunner(account); // a runner that takes any model: no job.warning event
    const job = await submitJob(account);
    expect(
      (await expectJson<JobBody>(`/v1/jobs/${job.id}/pause`, 200, { key: account.apiKey, method: 'POST' }))
        .status,
    ).toBe('paused');
    expect(
      (await expectJson<JobBody>(`/v1/jobs/${job.id}/resume`, 200, { key: account.apiKey, method: 'POST' }))
        .status,
    ).toBe('queued');
    const events = await expectJson<{ data: { id: number; type: string }[]; next_cursor: string }>(
      `/v1/jobs/${job.id}/events?limit=2`,
      200,
      { key: account.apiKey },
    );
    expect(events.data.map((e) => e.type)).toEqual(['job.queued', 'job.paused']);
    const rest = await expectJson<{ data: { type: string }[]; next_cursor: string }>(
      `/v1/jobs/${job.id}/events?cursor=${events.next_cursor}`,
      200,
      { key: account.apiKey },
    );
    expect(rest.data.map((e) => e.type)).toEqual(['job.resumed']);
    const none = await expectJson<{ data: unknown[]; next_cursor: string }>(
      `/v1/jobs/${job.id}/events?cursor=${rest.next_cursor}`,
      200,
      { key: account.apiKey },
    );
    expect(none).toEqual({ data: [], next_cursor: rest.next_cursor });
  });

  it('streams events over SSE and ends the stream once the job is finished', async () => {
    const account = await newAccount();
    await newRunner(account); // a runner that takes any model: no job.warning event
    const job = await submitJob(account);
    await expectJson(`/v1/jobs/${job.id}/cancel`, 200, { key: account.apiKey, method: 'POST' });
    const res = await call(`/v1/jobs/${job.id}/stream?poll_ms=100`, { key: account.apiKey });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const text = await res.text();
    const events = [...text.matchAll(/^event: (.+)$/gm)].map((m) => m[1]);
    expect(events).toEqual(['job.queued', 'job.cancelled']);
    expect(text).toMatch(/^id: \d+$/m);
    // Resuming after the first event id only sends what came after it.
    const firstId = /^id: (\d+)$/m.exec(text)![1];
    const resumed = await (
      await call(`/v1/jobs/${job.id}/stream?poll_ms=100`, {
        key: account.apiKey,
        headers: { 'last-event-id': firstId! },
      })
    ).text();
    expect([...resumed.matchAll(/^event: (.+)$/gm)].map((m) => m[1])).toEqual(['job.cancelled']);
  });
});
