import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { call, minimalSpec, newAccount, type TestAccount } from './helpers';

// Hostile job specs: each is refused with a 4xx that names its field path, and leaves no job behind.

type ErrorBody = { error: { code: string; message: string; fields: { path: string; message: string }[] } };

const DB = (env as unknown as { DB: D1Database }).DB;

async function jobCount(account: TestAccount): Promise<number> {
  const row = await DB.prepare('SELECT count(*) AS n FROM jobs WHERE account_id = ?1')
    .bind(account.accountId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

async function postRaw(account: TestAccount, text: string, headers: Record<string, string> = {}) {
  const res = await call('/v1/jobs', {
    method: 'POST',
    key: account.apiKey,
    body: text,
    headers: { 'content-type': 'application/json', ...headers },
  });
  const body = await res.text();
  return { status: res.status, text: body, json: JSON.parse(body) as ErrorBody };
}

const specWith = (placeholder: string, raw: string, extra: Record<string, unknown>) =>
  JSON.stringify(minimalSpec(extra)).replace(JSON.stringify(placeholder), () => raw);

describe('JSON body limits on POST /v1/jobs', () => {
  it('refuses a 20,000-deep verifier.config with 400 naming the path, before any job is written', async () => {
    const account = await newAccount();
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    const res = await postRaw(
      account,
      specWith('@@', deep, { verifier: { plugin: 'builtin:math', config: { deep: '@@' } } }),
    );
    expect(res.status, res.text).toBe(400);
    expect(res.json.error.fields[0]?.path).toMatch(/^verifier\.config\.deep\.0\.0/);
    expect(res.json.error.fields[0]?.message).toMatch(/nested deeper than 32/);
    expect(await jobCount(account)).toBe(0);
  });

  it('answers a 10 MB metadata string 413 from Content-Length, and no job exists', async () => {
    const account = await newAccount();
    const res = await postRaw(
      account,
      specWith('@@', JSON.stringify('a'.repeat(10 * 1024 * 1024)), { metadata: { big: '@@' } }),
    );
    expect(res.status, res.text.slice(0, 300)).toBe(413);
    expect(res.json.error.code).toBe('too_large');
    expect(res.json.error.fields[0]?.path).toBe('body');
    expect(await jobCount(account)).toBe(0);
  });

  it('answers 413 for a streamed body without Content-Length once it passes the limit', async () => {
    const account = await newAccount();
    const chunk = new TextEncoder().encode(`{"name":"${'x'.repeat(64 * 1024)}`);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 40) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const res = await call('/v1/jobs', {
      method: 'POST',
      key: account.apiKey,
      body,
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(413);
    expect(sent).toBeLessThan(40);
    expect(await jobCount(account)).toBe(0);
  });

  it('refuses __proto__ and constructor keys with their path instead of dropping them', async () => {
    const account = await newAccount();
    const proto = await postRaw(account, specWith('@@', '{"__proto__":{"x":"1"}}', { metadata: '@@' }));
    expect(proto.status, proto.text).toBe(400);
    expect(proto.json.error.fields).toEqual([
      { path: 'metadata.__proto__', message: expect.stringMatching(/not allowed/) },
    ]);
    const ctor = await postRaw(
      account,
      JSON.stringify(
        minimalSpec({ verifier: { plugin: 'builtin:math', config: { a: { constructor: 1 } } } }),
      ),
    );
    expect(ctor.status, ctor.text).toBe(400);
    expect(ctor.json.error.fields[0]?.path).toBe('verifier.config.a.constructor');
    expect(await jobCount(account)).toBe(0);
  });

  it('reports an empty key at its own path, not at the root', async () => {
    const account = await newAccount();
    const res = await postRaw(account, JSON.stringify(minimalSpec({ metadata: { '': 'x' } })));
    expect(res.status, res.text).toBe(400);
    expect(res.json.error.fields[0]?.path).toBe('metadata.""');
    const top = await postRaw(account, JSON.stringify({ ...minimalSpec(), '': 1 }));
    expect(top.status).toBe(400);
    expect(top.json.error.fields[0]?.path).toBe('""');
  });

  it('bounds strings and arrays, and keeps error bodies small whatever the request held', async () => {
    const account = await newAccount();
    const longString = await postRaw(account, JSON.stringify(minimalSpec({ name: 'n'.repeat(70_000) })));
    expect(longString.status).toBe(400);
    expect(longString.json.error.fields[0]?.path).toBe('name');
    expect(longString.text.length).toBeLessThan(4_000);

    const longArray = await postRaw(
      account,
      JSON.stringify(minimalSpec({ runner_labels: new Array(20_000).fill(0) })),
    );
    expect(longArray.status).toBe(400);
    expect(longArray.json.error.fields[0]?.path).toBe('runner_labels');

    // 900 wrong values: every one is a field error; the body lists 20 and says how many more.
    const metadata = Object.fromEntries(
      Array.from({ length: 900 }, (_, i) => [`k${i}`, [i, 'x'.repeat(200)]]),
    );
    const manyErrors = await postRaw(account, JSON.stringify(minimalSpec({ metadata })));
    expect(manyErrors.status).toBe(400);
    expect(manyErrors.json.error.fields.length).toBe(20);
    expect(manyErrors.json.error.message).toMatch(/880 more field errors not shown/);
    expect(manyErrors.text.length).toBeLessThan(10_000);
    expect(await jobCount(account)).toBe(0);
  });

  it('still accepts an ordinary spec', async () => {
    const account = await newAccount();
    const res = await postRaw(account, JSON.stringify(minimalSpec({ metadata: { team: 'a' } })));
    expect(res.status, res.text).toBe(201);
    expect(await jobCount(account)).toBe(1);
  });
});
