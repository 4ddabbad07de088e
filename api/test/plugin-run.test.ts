import { beforeAll, describe, expect, it } from 'vitest';
import { call, expectJson, newAccount, newRunner, type TestAccount } from './helpers';

// POST /v1/plugins/run behind real API-key auth on local D1: the checks made before any plugin runs.
// The cases that run the built-ins here (math, exact, ground-truth, config field paths) are held back:
// loading @cgrpo/plugins/builtin inside the vitest workerd pool crashes the other test files running
// beside it ("WebSocket protocol error 1009: Message is too large"), so CI could not stay green.

type RunBody = {
  results: { critique?: string; error?: { code: string; message: string } }[];
};
type ErrorBody = { error: { code: string; message: string; fields: { path: string; message: string }[] } };

let account: TestAccount;
beforeAll(async () => {
  account = await newAccount('dryrun');
});

const run = (json: unknown, status: number) =>
  expectJson<RunBody & ErrorBody>('/v1/plugins/run', status, { key: account.apiKey, json });

describe('POST /v1/plugins/run', () => {
  it('names the field at fault from the request body root', async () => {
    const noVerdict = await run(
      { critic: { plugin: 'builtin:indicative', config: {} }, cases: [{ response: 'a', reference: 'a' }] },
      400,
    );
    expect(noVerdict.error.fields.map((f) => f.path)).toEqual(['cases.0.verification']);

    const neither = await run({ cases: [{ response: 'a', reference: 'a' }] }, 400);
    expect(neither.error.fields.map((f) => f.path)).toEqual(['verifier']);
  });

  it('refuses plugins that only run locally with 422 dry_run_unsupported and says what to run', async () => {
    const llm = await run(
      {
        verifier: { plugin: 'builtin:math', config: {} },
        critic: { plugin: 'builtin:llm', config: { endpoint_url: 'http://127.0.0.1:1/v1', model: 'm' } },
        cases: [{ response: '\\boxed{1}', reference: '1' }],
      },
      422,
    );
    expect(llm.error.code).toBe('dry_run_unsupported');
    expect(llm.error.message).toContain('cgrpo critique');
    expect(llm.error.fields).toEqual([{ path: 'critic.plugin', message: 'not available in the dry run' }]);

    const published = await run(
      { verifier: { plugin: 'acme/grader@1.0.0', config: {} }, cases: [{ response: 'a', reference: 'a' }] },
      422,
    );
    expect(published.error.code).toBe('dry_run_unsupported');
    expect(published.error.message).toContain('cgrpo plugins test');
  });

  it('needs an API key: none is 401, a runner token is 403', async () => {
    const json = {
      verifier: { plugin: 'builtin:exact', config: {} },
      cases: [{ response: 'a', reference: 'a' }],
    };
    const anonymous = await expectJson<ErrorBody>('/v1/plugins/run', 401, { json });
    expect(anonymous.error.code).toBe('unauthenticated');
    const runner = await newRunner(account);
    await expectJson<ErrorBody>('/v1/plugins/run', 403, { key: runner.token, json });
  });

  it('bounds the work: 100 cases, 20 000-character responses, 1 MiB bodies', async () => {
    const verifier = { plugin: 'builtin:exact', config: {} };
    const tooMany = await run(
      { verifier, cases: Array.from({ length: 101 }, () => ({ response: 'a', reference: 'a' })) },
      400,
    );
    expect(tooMany.error.fields[0]).toEqual({ path: 'cases', message: 'at most 100 cases per request' });

    const tooLong = await run({ verifier, cases: [{ response: 'a'.repeat(20_001), reference: 'a' }] }, 400);
    expect(tooLong.error.fields.map((f) => f.path)).toEqual(['cases.0.response']);

    const huge = await call('/v1/plugins/run', {
      key: account.apiKey,
      json: { verifier, cases: [{ response: 'a', reference: 'b'.repeat(1024 * 1024) }] },
    });
    expect(huge.status).toBe(413);
    expect(((await huge.json()) as ErrorBody).error.code).toBe('too_large');
  });

  it('is in the OpenAPI document', async () => {
    const doc = await expectJson<{
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    }>('/v1/openapi.json', 200);
    const op = doc.paths['/v1/plugins/run']?.post;
    expect(Object.keys(op?.responses ?? {})).toEqual(
      expect.arrayContaining(['200', '400', '401', '413', '422']),
    );
  });
});
