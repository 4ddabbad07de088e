import { describe, expect, it } from 'vitest';
import { call, expectJson, lease, newAccount, newRunner, submitJob, type TestAccount } from './helpers';

type Version = {
  ref: string;
  version: string;
  kind: string;
  builtin: boolean;
  sha256: string | null;
  deprecated: boolean;
};
type ErrorBody = { error: { code: string; message: string; fields: { path: string; message: string }[] } };

async function sha256(text: string) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function publish(
  account: TestAccount,
  name: string,
  version: string,
  code: string,
  kind = 'verifier',
  sha?: string,
) {
  const manifest = { name: `${account.handle}/${name}`, version, kind, sha256: sha ?? (await sha256(code)) };
  const form = new FormData();
  form.set('manifest', JSON.stringify(manifest));
  form.set('bundle', new File([code], 'bundle.mjs', { type: 'text/javascript' }));
  return call('/v1/plugins', { key: account.apiKey, method: 'POST', body: form });
}

describe('plugin registry', () => {
  it('publishes immutable versions addressed by sha256 and lists them with the built-ins', async () => {
    const account = await newAccount('acme');
    const code = 'export default { verify() { return { score: 1, correct: true, details: {} }; } };';
    const res = await publish(account, 'grader', '1.0.0', code);
    expect(res.status).toBe(201);
    const v1 = (await res.json()) as Version;
    expect(v1).toMatchObject({
      ref: `${account.handle}/grader@1.0.0`,
      kind: 'verifier',
      builtin: false,
      sha256: await sha256(code),
    });

    // Same bytes again: the existing version. Other bytes for the same version: 409.
    expect((await publish(account, 'grader', '1.0.0', code)).status).toBe(200);
    const clash = await publish(account, 'grader', '1.0.0', `${code}\n// changed`);
    expect(clash.status).toBe(409);
    expect(((await clash.json()) as ErrorBody).error.code).toBe('version_exists');
    expect((await publish(account, 'grader', '1.10.0', `${code}//1.10`)).status).toBe(201);
    expect((await publish(account, 'grader', '1.2.0', `${code}//1.2`)).status).toBe(201);
    expect((await publish(account, 'grader', '1.10.0-rc.1', `${code}//rc`)).status).toBe(201);

    const versions = await expectJson<{ data: Version[] }>(`/v1/plugins/${account.handle}/grader`, 200, {
      key: account.apiKey,
    });
    expect(versions.data.map((v) => v.version)).toEqual(['1.10.0', '1.10.0-rc.1', '1.2.0', '1.0.0']);
    const list = await expectJson<{ data: Version[] }>('/v1/plugins?kind=verifier', 200, {
      key: account.apiKey,
    });
    expect(list.data.filter((v) => v.builtin).map((v) => v.ref)).toEqual([
      'builtin:math',
      'builtin:exact',
      'builtin:regex',
      'builtin:choice',
      'builtin:text-similarity',
      'builtin:score-model',
      'builtin:multi',
    ]);
    expect(list.data.find((v) => v.ref.startsWith(`${account.handle}/grader@`))?.version).toBe('1.10.0');
    const builtin = await expectJson<{ data: Version[] }>('/v1/plugins/builtin/ground-truth', 200, {
      key: account.apiKey,
    });
    expect(builtin.data[0]).toMatchObject({ kind: 'critic', builtin: true });

    const one = await expectJson<Version & { manifest: { name: string } }>(
      `/v1/plugins/${account.handle}/grader/1.0.0`,
      200,
      {
        key: account.apiKey,
      },
    );
    expect(one.manifest.name).toBe(`${account.handle}/grader`);
    const bundle = await call(`/v1/plugins/${account.handle}/grader/1.0.0/bundle`, { key: account.apiKey });
    expect(await bundle.text()).toBe(code);

    const deprecated = await expectJson<Version>(
      `/v1/plugins/${account.handle}/grader/1.0.0/deprecate`,
      200,
      {
        key: account.apiKey,
        json: { message: 'use 1.10.0' },
      },
    );
    expect(deprecated.deprecated).toBe(true);
  });

  it('rejects a manifest whose sha256 does not match, a bad manifest, and publishing under another owner', async () => {
    const account = await newAccount();
    const mismatch = await publish(account, 'p', '1.0.0', 'export default {}', 'verifier', 'a'.repeat(64));
    expect(mismatch.status).toBe(400);
    expect(((await mismatch.json()) as ErrorBody).error.fields).toEqual([
      { path: 'manifest.sha256', message: 'does not match the bundle' },
    ]);
    const badKind = await publish(account, 'p', '1.0.0', 'export default {}', 'grader');
    expect(((await badKind.json()) as ErrorBody).error.fields[0]?.path).toBe('manifest.kind');

    const form = new FormData();
    form.set(
      'manifest',
      JSON.stringify({
        name: 'someone-else/p',
        version: '1.0.0',
        kind: 'verifier',
        sha256: await sha256('x'),
      }),
    );
    form.set('bundle', new File(['x'], 'b.mjs'));
    const foreign = await call('/v1/plugins', { key: account.apiKey, method: 'POST', body: form });
    expect(foreign.status).toBe(403);
  });

  it('lets a job use a published plugin and hands the runner its bundle by sha256', async () => {
    const account = await newAccount();
    const code = 'export default { critique() { return { critique: "ok" }; } };';
    expect((await publish(account, 'critic', '0.1.0', code, 'critic')).status).toBe(201);
    const ref = `${account.handle}/critic@0.1.0`;
    const wrongRole = await expectJson<ErrorBody>('/v1/jobs', 400, {
      key: account.apiKey,
      json: {
        model: { id: 'm' },
        datasets: { train: { uri: 'https://example.test/t.jsonl' } },
        verifier: { plugin: ref },
      },
    });
    expect(wrongRole.error.fields).toEqual([
      { path: 'verifier.plugin', message: `${ref} is a critic, not a verifier` },
    ]);
    await submitJob(account, { critic: { plugin: ref, config: { tone: 'short' } } });
    const runner = await newRunner(account);
    const leased = (await lease(runner.token))!;
    const critic = leased.plugins.find((p) => p.role === 'critic') as unknown as {
      bundle_url: string;
      sha256: string;
      builtin: boolean;
    };
    expect(critic).toMatchObject({ builtin: false, sha256: await sha256(code) });
    const bundle = await call(critic.bundle_url, { key: runner.token });
    expect(await bundle.text()).toBe(code);
  });
});
