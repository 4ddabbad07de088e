import { describe, expect, it } from 'vitest';
import { call, expectJson, newAccount, newRunner, submitJob } from './helpers';

describe('auth', () => {
  it('rejects a missing, malformed, unknown or revoked key with 401 and the error body', async () => {
    const missing = await expectJson<{ error: { code: string; message: string; request_id: string } }>(
      '/v1/jobs',
      401,
    );
    expect(missing.error.code).toBe('unauthenticated');
    expect(missing.error.message).toContain('Authorization');
    expect(missing.error.request_id).toMatch(/^req_/);
    await expectJson('/v1/jobs', 401, { headers: { authorization: 'Basic abc' } });
    await expectJson('/v1/jobs', 401, { key: 'cgrpo_sk_doesnotexist' });

    const account = await newAccount();
    const created = await expectJson<{ id: string; key: string; prefix: string }>('/v1/keys', 201, {
      key: account.apiKey,
      json: { name: 'ci' },
    });
    expect(created.key).toMatch(/^cgrpo_sk_[0-9A-Za-z]{40}$/);
    expect(created.key.startsWith(created.prefix)).toBe(true);
    await expectJson('/v1/jobs', 200, { key: created.key });
    await expectJson(`/v1/keys/${created.id}`, 200, { key: account.apiKey, method: 'DELETE' });
    const revoked = await expectJson<{ error: { code: string } }>('/v1/jobs', 401, { key: created.key });
    expect(revoked.error.code).toBe('unauthenticated');
  });

  it('keeps runner tokens and API keys to their own routes (403)', async () => {
    const account = await newAccount();
    const runner = await newRunner(account);
    const onUserRoute = await expectJson<{ error: { code: string; message: string } }>('/v1/jobs', 403, {
      key: runner.token,
    });
    expect(onUserRoute.error.code).toBe('forbidden');
    const onRunnerRoute = await expectJson<{ error: { code: string } }>('/v1/runner/lease', 403, {
      key: account.apiKey,
      json: { wait_seconds: 0 },
    });
    expect(onRunnerRoute.error.code).toBe('forbidden');
    // An API key cannot register runners; a registration key cannot call user routes.
    await expectJson('/v1/runner/register', 401, { key: account.apiKey, json: { name: 'x' } });
    await expectJson('/v1/jobs', 401, { key: account.registrationKey });
  });

  it("isolates accounts: another account's job is a 404", async () => {
    const a = await newAccount();
    const b = await newAccount();
    const job = await submitJob(a);
    await expectJson(`/v1/jobs/${job.id}`, 200, { key: a.apiKey });
    const other = await expectJson<{ error: { code: string } }>(`/v1/jobs/${job.id}`, 404, { key: b.apiKey });
    expect(other.error.code).toBe('not_found');
    await expectJson(`/v1/jobs/${job.id}/cancel`, 404, { key: b.apiKey, method: 'POST' });
    await expectJson(`/v1/jobs/${job.id}/events`, 404, { key: b.apiKey });
    const list = await expectJson<{ data: { id: string }[] }>('/v1/jobs', 200, { key: b.apiKey });
    expect(list.data).toEqual([]);
  });
});

describe('bootstrap', () => {
  it('is open to loopback clients in development only', async () => {
    const remote = await expectJson<{ error: { code: string } }>('/v1/bootstrap', 403, {
      json: { handle: 'remote-try' },
      headers: { 'cf-connecting-ip': '203.0.113.5' },
    });
    expect(remote.error.code).toBe('forbidden');
    await expectJson('/v1/bootstrap', 201, {
      json: { handle: 'loopback-try' },
      headers: { 'cf-connecting-ip': '127.0.0.1' },
    });
  });
});

describe('account routes', () => {
  it('shows the account and lists keys without secrets', async () => {
    const account = await newAccount('acme');
    const me = await expectJson<{ id: string; handle: string }>('/v1/account', 200, { key: account.apiKey });
    expect(me).toMatchObject({ id: account.accountId, handle: account.handle });
    const keys = await expectJson<{ data: Record<string, unknown>[] }>('/v1/keys', 200, {
      key: account.apiKey,
    });
    expect(keys.data).toHaveLength(1);
    expect(keys.data[0]).not.toHaveProperty('key');
    expect(keys.data[0]).not.toHaveProperty('hash');
  });

  it('creates, lists and revokes runner registration keys and runners', async () => {
    const account = await newAccount();
    const rk = await expectJson<{ id: string; key: string }>('/v1/runner-keys', 201, {
      key: account.apiKey,
      json: {},
    });
    expect(rk.key).toMatch(/^cgrpo_rk_/);
    const listed = await expectJson<{ data: { id: string }[] }>('/v1/runner-keys', 200, {
      key: account.apiKey,
    });
    expect(listed.data.map((k) => k.id)).toContain(rk.id);
    const runner = await expectJson<{ runner_id: string; token: string }>('/v1/runner/register', 201, {
      key: rk.key,
      json: { name: 'gpu-1', labels: ['gpu'], capabilities: ['cuda'] },
    });
    expect(runner.token).toMatch(/^cgrpo_rt_/);
    const runners = await expectJson<{ data: { id: string; labels: string[] }[] }>('/v1/runners', 200, {
      key: account.apiKey,
    });
    expect(runners.data).toEqual([expect.objectContaining({ id: runner.runner_id, labels: ['gpu'] })]);
    await expectJson(`/v1/runner-keys/${rk.id}`, 200, { key: account.apiKey, method: 'DELETE' });
    await expectJson('/v1/runner/register', 401, { key: rk.key, json: { name: 'again' } });
    await expectJson(`/v1/runners/${runner.runner_id}`, 200, { key: account.apiKey, method: 'DELETE' });
    await expectJson('/v1/runner/lease', 401, { key: runner.token, json: { wait_seconds: 0 } });
  });

  it('validates bodies with field paths and answers unknown routes with the error body', async () => {
    const account = await newAccount();
    const bad = await expectJson<{ error: { code: string; fields: { path: string }[] } }>('/v1/keys', 400, {
      key: account.apiKey,
      json: { name: 'x', nmae: 'typo' },
    });
    expect(bad.error.fields).toEqual([{ path: 'nmae', message: 'unknown field (check the spelling)' }]);
    const notJson = await call('/v1/keys', {
      key: account.apiKey,
      method: 'POST',
      body: 'name=x',
      headers: { 'content-type': 'text/plain' },
    });
    expect(notJson.status).toBe(415);
    expect(((await notJson.json()) as { error: { code: string } }).error.code).toBe('unsupported_media_type');
    const nowhere = await expectJson<{ error: { code: string } }>('/nowhere', 404);
    expect(nowhere.error.code).toBe('not_found');
  });
});
