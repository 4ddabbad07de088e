import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { call, expectJson, minimalSpec, newAccount, type TestAccount } from './helpers';

// The plugin registry and job submission under hostile input: one account cannot break the
// registry for others, and what a job names is checked when it is submitted, not when it runs.

type ErrorBody = { error: { code: string; message: string; fields: { path: string; message: string }[] } };
const DB = (env as unknown as { DB: D1Database }).DB;
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

async function sha256(text: string) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

const CODE = 'export default { verify() { return { score: 1, correct: true, details: {} }; } };';

async function publishRaw(account: TestAccount, manifestText: string, code = CODE) {
  const form = new FormData();
  form.set('manifest', manifestText);
  form.set('bundle', new File([code], 'bundle.mjs', { type: 'text/javascript' }));
  const res = await call('/v1/plugins', { key: account.apiKey, method: 'POST', body: form });
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) as ErrorBody };
}

async function manifest(account: TestAccount, extra: Record<string, unknown> = {}) {
  return {
    name: `${account.handle}/grader`,
    version: '1.0.0',
    kind: 'verifier',
    sha256: await sha256(CODE),
    ...extra,
  };
}

async function pluginCount(account: TestAccount) {
  const row = await DB.prepare('SELECT count(*) AS n FROM plugins WHERE account_id = ?1')
    .bind(account.accountId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

async function submit(account: TestAccount, extra: Record<string, unknown>) {
  const res = await call('/v1/jobs', { key: account.apiKey, json: minimalSpec(extra) });
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) as ErrorBody };
}

describe('a registry no tenant can break', () => {
  it('refuses a 100,000-deep config_schema at publish; nothing is stored and B still lists', async () => {
    const a = await newAccount('reg-a');
    const b = await newAccount('reg-b');
    const deepManifest = async (depth: number) =>
      JSON.stringify(await manifest(a, { config_schema: { type: 'object', properties: '@@' } })).replace(
        '"@@"',
        nested(depth),
      );
    // 200 KB of brackets: over the manifest size limit.
    const huge = await publishRaw(a, await deepManifest(100_000));
    expect(huge.status, huge.text.slice(0, 300)).toBe(413);
    expect(huge.json.error.fields[0]?.path).toBe('manifest');
    // Small but 40 deep: over the depth limit, named at its path.
    const deep = await publishRaw(a, await deepManifest(40));
    expect(deep.status, deep.text.slice(0, 300)).toBe(400);
    expect(deep.json.error.fields[0]?.path).toMatch(/^manifest\.config_schema\.properties\.0\.0/);
    expect(await pluginCount(a)).toBe(0);
    expect((await call('/v1/plugins', { key: b.apiKey })).status).toBe(200);
  });

  it('lists a stored row that is too deep to serve without its manifest, for every account', async () => {
    const a = await newAccount('reg-a');
    const b = await newAccount('reg-b');
    const bad = `{"name":"${a.handle}/legacy","version":"1.0.0","kind":"verifier","config_schema":${nested(100_000)}}`;
    await DB.prepare(
      `INSERT INTO plugins (id, account_id, owner, name, version, major, minor, patch, prerelease, kind, sha256, size, manifest, deprecated, created_at)
       VALUES (?1, ?2, ?3, 'legacy', '1.0.0', 1, 0, 0, '', 'verifier', ?4, 1, ?5, 0, ?6)`,
    )
      .bind(`plg_legacy_${a.handle}`, a.accountId, a.handle, '0'.repeat(64), bad, Date.now())
      .run();
    const list = await expectJson<{ data: { ref: string; manifest: unknown }[] }>('/v1/plugins', 200, {
      key: b.apiKey,
    });
    expect(list.data.find((p) => p.ref === `${a.handle}/legacy@1.0.0`)?.manifest).toBeNull();
    await expectJson(`/v1/plugins/${a.handle}/legacy/1.0.0`, 200, { key: b.apiKey });
    // A job naming it is refused at submission instead of failing on lease.
    const job = await submit(b, { verifier: { plugin: `${a.handle}/legacy@1.0.0` } });
    expect(job.status, job.text).toBe(400);
    expect(job.json.error.fields[0]?.path).toBe('verifier.plugin');
  });

  it('bounds plugin names and versions, and refuses config_schemas that do not compile', async () => {
    const a = await newAccount('reg-a');
    const longName = await publishRaw(
      a,
      JSON.stringify(await manifest(a, { name: `${a.handle}/${'n'.repeat(200)}` })),
    );
    expect(longName.status).toBe(400);
    expect(longName.json.error.fields[0]?.path).toBe('manifest.name');
    const hugeMajor = await publishRaw(
      a,
      JSON.stringify(await manifest(a, { version: '100000000000000000000.0.0' })),
    );
    expect(hugeMajor.status).toBe(400);
    expect(hugeMajor.json.error.fields[0]?.path).toBe('manifest.version');
    const megabyteName = await publishRaw(
      a,
      JSON.stringify(await manifest(a, { name: `${a.handle}/${'n'.repeat(1 << 20)}` })),
    );
    expect(megabyteName.status).toBe(413);
    const badRef = await publishRaw(
      a,
      JSON.stringify(await manifest(a, { config_schema: { $ref: '#/nowhere' } })),
    );
    expect(badRef.status, badRef.text).toBe(400);
    expect(badRef.json.error.fields[0]?.path).toBe('manifest.config_schema');
    const proto = await publishRaw(
      a,
      JSON.stringify(await manifest(a)).replace('{', '{"config_schema":{"__proto__":{"type":"object"}},'),
    );
    expect(proto.status).toBe(400);
    expect(proto.json.error.fields[0]?.path).toBe('manifest.config_schema.__proto__');
    expect(await pluginCount(a)).toBe(0);
    // The job side: a ref with an absurd major is refused at submission.
    const job = await submit(a, { verifier: { plugin: `${a.handle}/grader@100000000000000000000.0.0` } });
    expect(job.status).toBe(400);
    expect(job.json.error.fields[0]?.path).toBe('verifier.plugin');
  });
});

describe('job submission checks what it can', () => {
  it("validates a published plugin's config against its config_schema; unknown keys are refused", async () => {
    const a = await newAccount('sub');
    const schema = {
      type: 'object',
      properties: { tolerance: { type: 'number', minimum: 0 }, mode: { enum: ['strict', 'loose'] } },
    };
    const pub = await publishRaw(a, JSON.stringify(await manifest(a, { config_schema: schema })));
    expect(pub.status, pub.text).toBe(201);
    const ref = `${a.handle}/grader@1.0.0`;
    expect(
      (await submit(a, { verifier: { plugin: ref, config: { tolerance: 0.1, mode: 'strict' } } })).status,
    ).toBe(201);
    const typo = await submit(a, { verifier: { plugin: ref, config: { tolerence: 0.1 } } });
    expect(typo.status, typo.text).toBe(400);
    expect(typo.json.error.fields).toEqual([
      { path: 'verifier.config.tolerence', message: 'unknown field (check the spelling)' },
    ]);
    const wrongType = await submit(a, { verifier: { plugin: ref, config: { tolerance: 'x' } } });
    expect(wrongType.status).toBe(400);
    expect(wrongType.json.error.fields[0]?.path).toBe('verifier.config.tolerance');
  });

  it('validates built-in configs as POST /v1/plugins/run does', async () => {
    const a = await newAccount('sub');
    expect(
      (await submit(a, { verifier: { plugin: 'builtin:math', config: { float_rounding: 4 } } })).status,
    ).toBe(201);
    const bad = await submit(a, { verifier: { plugin: 'builtin:math', config: { float_rounding: 'str' } } });
    expect(bad.status, bad.text).toBe(400);
    const run = await call('/v1/plugins/run', {
      key: a.apiKey,
      json: {
        verifier: { plugin: 'builtin:math', config: { float_rounding: 'str' } },
        cases: [{ response: '1', reference: '1' }],
      },
    });
    const runBody = (await run.json()) as ErrorBody;
    expect(run.status).toBe(400);
    expect(bad.json.error.fields).toEqual(runBody.error.fields);
    const unknown = await submit(a, { critic: { plugin: 'builtin:ground-truth', config: { nope: 1 } } });
    expect(unknown.status).toBe(400);
    expect(unknown.json.error.fields[0]?.path).toBe('critic.config.nope');
    // The first builtin:math config check evaluates the math verifier's libraries (seconds on a
    // loaded 2-core box).
  }, 120_000);

  it('refuses file: dataset paths that leave the data root', async () => {
    const a = await newAccount('sub');
    const ok = await submit(a, { datasets: { train: { uri: 'file:examples/datasets/arith-train.jsonl' } } });
    expect(ok.status, ok.text).toBe(201);
    for (const uri of [
      'file:../../../../etc/passwd',
      'file:data/../../secret.jsonl',
      'file:%2e%2e/secret.jsonl',
      'file:/etc/passwd',
      'file:///etc/passwd',
      'file:~/x.jsonl',
    ]) {
      const res = await submit(a, { datasets: { train: { uri } } });
      expect(res.status, `${uri}: ${res.text}`).toBe(400);
      expect(res.json.error.fields[0]?.path).toBe('datasets.train.uri');
    }
  });

  it("checks prompts_per_step against an uploaded dataset's row count", async () => {
    const a = await newAccount('sub');
    const rows =
      '{"prompt":"1+1","answer":"2"}\n{"prompt":"2+2","answer":"4"}\n{"prompt":"3+3","answer":"6"}\n';
    const art = await expectJson<{ id: string }>(
      '/v1/artifacts?name=t.jsonl&kind=dataset&prompt_field=prompt&reference_field=answer',
      201,
      {
        key: a.apiKey,
        body: rows,
        headers: { 'content-type': 'application/octet-stream' },
      },
    );
    const datasets = {
      train: { uri: `artifact://${art.id}`, fields: { prompt: 'prompt', reference: 'answer' } },
    };
    const tooMany = await submit(a, { datasets, hyperparameters: { prompts_per_step: 4 } });
    expect(tooMany.status, tooMany.text).toBe(400);
    expect(tooMany.json.error.fields[0]?.path).toBe('hyperparameters.prompts_per_step');
    expect((await submit(a, { datasets, hyperparameters: { prompts_per_step: 3 } })).status).toBe(201);
  });
});
