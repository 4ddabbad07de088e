import { describe, expect, it } from 'vitest';
import { call, expectJson, newAccount, testEnv } from './helpers';

type Artifact = {
  id: string;
  status: string;
  size: number;
  sha256: string;
  rows: number | null;
  kind: string;
};
type ErrorBody = { error: { code: string; message: string; fields: { path: string; message: string }[] } };

const row = (i: number) => JSON.stringify({ question: `What is ${i} + ${i}?`, answer: String(2 * i) });
const jsonl = (n: number) => `${Array.from({ length: n }, (_, i) => row(i)).join('\n')}\n`;

async function sha256(text: string | Uint8Array) {
  const bytes = typeof text === 'string' ? new TextEncoder().encode(text) : text;
  return [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))]
    .map((b) => b.toString(16).padStart(2, '0'))
    .join('');
}

async function storedObjects(accountId: string) {
  return (await testEnv.ARTIFACTS.list({ prefix: `artifacts/${accountId}/` })).objects.length;
}

function upload(key: string, query: string, body: string | Uint8Array) {
  const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
  return call(`/v1/artifacts?${query}`, {
    key,
    method: 'POST',
    body: bytes,
    headers: { 'content-type': 'application/x-ndjson', 'content-length': String(bytes.byteLength) },
  });
}

describe('single-request upload', () => {
  it('stores a valid dataset with its sha256, size and row count, and serves it back', async () => {
    const account = await newAccount();
    const text = jsonl(50);
    const res = await upload(
      account.apiKey,
      'name=train.jsonl&kind=dataset&prompt_field=question&reference_field=answer',
      text,
    );
    expect(res.status).toBe(201);
    const artifact = (await res.json()) as Artifact;
    expect(artifact).toMatchObject({
      kind: 'dataset',
      status: 'ready',
      size: text.length,
      rows: 50,
      sha256: await sha256(text),
    });
    const got = await expectJson<Artifact>(`/v1/artifacts/${artifact.id}`, 200, { key: account.apiKey });
    expect(got).toEqual(artifact);
    const content = await call(`/v1/artifacts/${artifact.id}/content`, { key: account.apiKey });
    expect(await content.text()).toBe(text);
    const listed = await expectJson<{ data: { id: string }[] }>('/v1/artifacts?kind=dataset', 200, {
      key: account.apiKey,
    });
    expect(listed.data.map((a) => a.id)).toEqual([artifact.id]);
    // The dataset can now be used by a job.
    await expectJson('/v1/jobs', 201, {
      key: account.apiKey,
      json: {
        model: { id: 'Qwen/Qwen3-0.6B' },
        datasets: {
          train: { uri: `artifact://${artifact.id}`, fields: { prompt: 'question', reference: 'answer' } },
        },
        // At most the dataset's 50 rows (checked at submission since drop_last is on).
        hyperparameters: { prompts_per_step: 8 },
      },
    });
  });

  it('a job naming no fields reads an uploaded dataset with the mapping it was uploaded with; named fields win', async () => {
    const account = await newAccount();
    const res = await upload(
      account.apiKey,
      'name=renamed.jsonl&kind=dataset&prompt_field=question&reference_field=final&solution_field=work',
      jsonl(20)
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          const row = JSON.parse(l) as { question: string; answer: string };
          return JSON.stringify({ question: row.question, final: row.answer, work: 'w' });
        })
        .join('\n'),
    );
    expect(res.status).toBe(201);
    const artifact = (await res.json()) as Artifact;
    const submit = (train: Record<string, unknown>) =>
      expectJson<{ spec: { datasets: { train: { fields: Record<string, string> } } } }>('/v1/jobs', 201, {
        key: account.apiKey,
        json: {
          model: { id: 'Qwen/Qwen3-0.6B' },
          datasets: { train },
          hyperparameters: { prompts_per_step: 4 },
        },
      });
    const inherited = await submit({ uri: `artifact://${artifact.id}` });
    expect(inherited.spec.datasets.train.fields).toEqual({
      prompt: 'question',
      reference: 'final',
      solution: 'work',
    });
    const named = await submit({
      uri: `artifact://${artifact.id}`,
      fields: { prompt: 'question', reference: 'work' },
    });
    expect(named.spec.datasets.train.fields).toEqual({ prompt: 'question', reference: 'work' });
  });

  it('rejects a dataset whose line 17 is bad, naming line 17, and stores nothing', async () => {
    const account = await newAccount();
    const lines = jsonl(30).split('\n');
    lines[16] = JSON.stringify({ question: 'no answer here' });
    const res = await upload(
      account.apiKey,
      'name=bad.jsonl&kind=dataset&prompt_field=question&reference_field=answer',
      lines.join('\n'),
    );
    expect(res.status).toBe(400);
    const body = (await res.json()) as ErrorBody;
    expect(body.error.code).toBe('invalid_dataset');
    expect(body.error.message).toContain('line 17');
    expect(body.error.fields).toEqual([
      { path: 'line 17', message: 'field "answer" (the reference answer) must be a string or number' },
    ]);
    expect(
      (await expectJson<{ data: unknown[] }>('/v1/artifacts', 200, { key: account.apiKey })).data,
    ).toEqual([]);
    expect(await storedObjects(account.accountId)).toBe(0);

    const notJson = await upload(
      account.apiKey,
      'name=b.jsonl&kind=dataset',
      '{"prompt":"a","answer":"1"}\n{oops\n',
    );
    expect(((await notJson.json()) as ErrorBody).error.fields[0]).toEqual({
      path: 'line 2',
      message: 'not valid JSON',
    });
  });

  it('answers 413 with a pointer to multipart when the body is over the limit, and 411 without a length', async () => {
    const account = await newAccount();
    const tooBig = await call('/v1/artifacts?name=big.bin', {
      key: account.apiKey,
      method: 'POST',
      body: new ReadableStream({ start: (c) => c.close() }),
      headers: { 'content-length': String(200 * 1024 * 1024) },
    });
    expect(tooBig.status).toBe(413);
    const body = (await tooBig.json()) as ErrorBody;
    expect(body.error.code).toBe('too_large');
    expect(body.error.message).toContain('/v1/artifacts/uploads');
    const chunked = await call('/v1/artifacts?name=x.bin', {
      key: account.apiKey,
      method: 'POST',
      body: new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode('abc'));
          c.close();
        },
      }),
    });
    expect(chunked.status).toBe(411);
  });
});

describe('multipart upload', () => {
  it('assembles parts, validates the dataset at completion and records the sha256', async () => {
    const account = await newAccount();
    const started = await expectJson<{ artifact: Artifact; part_url: string; complete_url: string }>(
      '/v1/artifacts/uploads',
      201,
      {
        key: account.apiKey,
        json: { name: 'big.jsonl', kind: 'dataset' },
      },
    );
    expect(started.artifact.status).toBe('uploading');
    // Part 1 must be ≥ 5 MiB: pad with valid rows.
    const filler = `${JSON.stringify({ prompt: 'x'.repeat(1000), answer: '1' })}\n`;
    const part1 = filler.repeat(Math.ceil((5 * 1024 * 1024) / filler.length));
    const part2 = `${JSON.stringify({ prompt: 'last', answer: 2 })}\n`;
    const parts = [];
    for (const [n, text] of [
      [1, part1],
      [2, part2],
    ] as const) {
      const bytes = new TextEncoder().encode(text);
      parts.push(
        await expectJson<{ part_number: number; etag: string }>(
          started.part_url.replace('{part_number}', String(n)),
          200,
          {
            key: account.apiKey,
            method: 'PUT',
            body: bytes,
            headers: { 'content-length': String(bytes.byteLength) },
          },
        ),
      );
    }
    const done = await expectJson<Artifact>(started.complete_url, 200, {
      key: account.apiKey,
      json: { parts },
    });
    expect(done).toMatchObject({
      status: 'ready',
      size: part1.length + part2.length,
      sha256: await sha256(part1 + part2),
    });
    expect(done.rows).toBe(part1.split('\n').length - 1 + 1);
  });

  it('deletes an upload whose dataset fails validation at completion', async () => {
    const account = await newAccount();
    const started = await expectJson<{ artifact: Artifact; part_url: string; complete_url: string }>(
      '/v1/artifacts/uploads',
      201,
      {
        key: account.apiKey,
        json: { name: 'bad.jsonl', kind: 'dataset' },
      },
    );
    const bytes = new TextEncoder().encode('{"prompt":"a","answer":"1"}\n[1,2]\n');
    const part = await expectJson<{ part_number: number; etag: string }>(
      started.part_url.replace('{part_number}', '1'),
      200,
      {
        key: account.apiKey,
        method: 'PUT',
        body: bytes,
        headers: { 'content-length': String(bytes.byteLength) },
      },
    );
    const failed = await expectJson<ErrorBody>(started.complete_url, 400, {
      key: account.apiKey,
      json: { parts: [part] },
    });
    expect(failed.error.fields).toEqual([{ path: 'line 2', message: 'must be a JSON object' }]);
    await expectJson(`/v1/artifacts/${started.artifact.id}`, 404, { key: account.apiKey });
    expect(await storedObjects(account.accountId)).toBe(0);
  });
});
