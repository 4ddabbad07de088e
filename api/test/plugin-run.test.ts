import { beforeAll, describe, expect, it } from 'vitest';
import { call, expectJson, newAccount, newRunner, type TestAccount } from './helpers';

// POST /v1/plugins/run: the real built-in plugins evaluated inside workerd (the math verifier with
// its CAS included), behind real API-key auth on local D1.

type Verification = { score: number; correct: boolean; details: Record<string, unknown> };
type RunBody = {
  results: { verification?: Verification; critique?: string; error?: { code: string; message: string } }[];
};
type ErrorBody = { error: { code: string; message: string; fields: { path: string; message: string }[] } };

let account: TestAccount;
beforeAll(async () => {
  account = await newAccount('dryrun');
});

const run = (json: unknown, status: number) =>
  expectJson<RunBody & ErrorBody>('/v1/plugins/run', status, { key: account.apiKey, json });

describe('POST /v1/plugins/run', () => {
  it('runs builtin:math on boxed answers and the ground-truth critic on its verdicts, in order', async () => {
    const body = await run(
      {
        verifier: { plugin: 'builtin:math', config: {} },
        critic: { plugin: 'builtin:ground-truth', config: {} },
        cases: [
          { question: 'Expand (x+1)^2.', response: 'So we get \\boxed{x^2+2x+1}.', reference: '(x+1)^2' },
          { question: '1/2 + 1/4?', response: 'The sum is \\boxed{\\frac{3}{4}}', reference: '0.75' },
          { question: '2 + 2?', response: 'I think it is \\boxed{5}.', reference: '4' },
        ],
      },
      200,
    );
    expect(body.results.map((r) => r.verification?.correct)).toEqual([true, true, false]);
    expect(body.results.map((r) => r.verification?.score)).toEqual([1, 1, 0]);
    expect(body.results[2]!.verification!.details.extracted).toBe('5');
    expect(body.results[0]!.critique).toBe('The generated solution is correct, the ground truth is (x+1)^2.');
    expect(body.results[2]!.critique).toBe('The generated solution is incorrect, the ground truth is 4.');
    expect(body.results.every((r) => r.error === undefined)).toBe(true);
  });

  it('runs builtin:exact with its config, and a critic alone on verdicts the cases give', async () => {
    const exact = await run(
      {
        verifier: { plugin: 'builtin:exact', config: { case_sensitive: true } },
        cases: [
          { response: 'Answer: Paris', reference: 'Paris' },
          { response: 'Answer: paris', reference: 'Paris' },
        ],
      },
      200,
    );
    expect(exact.results.map((r) => r.verification?.correct)).toEqual([true, false]);
    expect(exact.results[0]!.critique).toBeUndefined();

    const critic = await run(
      {
        critic: { plugin: 'builtin:indicative', config: { incorrect_text: 'Wrong.' } },
        cases: [
          { response: 'x', reference: 'y', verification: { score: 0, correct: false } },
          { response: 'y', reference: 'y', verification: { score: 1, correct: true } },
        ],
      },
      200,
    );
    expect(critic.results).toEqual([
      { critique: 'Wrong.' },
      { critique: 'The generated solution is correct.' },
    ]);
  });

  it('names the bad config field from the request body root', async () => {
    const bad = await run(
      {
        verifier: { plugin: 'builtin:math', config: { float_rounding: 99, extraction_order: [] } },
        cases: [{ response: '\\boxed{1}', reference: '1' }],
      },
      400,
    );
    expect(bad.error.code).toBe('invalid_request');
    expect(bad.error.fields.map((f) => f.path).sort()).toEqual([
      'verifier.config.extraction_order',
      'verifier.config.float_rounding',
    ]);
    expect(bad.error.message).toContain('verifier.config.float_rounding');

    const unknown = await run(
      {
        critic: { plugin: 'builtin:math', config: {} },
        cases: [{ response: 'a', reference: 'a', verification: { score: 1, correct: true } }],
      },
      400,
    );
    expect(unknown.error.fields[0]!.path).toBe('critic.plugin');
    expect(unknown.error.message).toContain('builtin:ground-truth');

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

  it('runs builtin:text-similarity and builtin:multi (the OpenAI grader verifiers); builtin:score-model needs a runner', async () => {
    const similar = await run(
      {
        verifier: { plugin: 'builtin:text-similarity', config: { metric: 'bleu', pass_threshold: 0.5 } },
        cases: [
          { response: 'the cat sat on the mat', reference: 'the cat sat on a mat' },
          { response: 'a dog', reference: 'the cat sat on a mat' },
        ],
      },
      200,
    );
    // BLEU-4 of the first pair: (5/6 · 3/5 · 2/4 · 1/3)^(1/4) = (1/12)^(1/4)
    expect(similar.results[0]!.verification!.score).toBeCloseTo((1 / 12) ** 0.25, 12);
    expect(similar.results[0]!.verification!.correct).toBe(true);
    expect(similar.results[1]!.verification).toMatchObject({ score: 0, correct: false });

    const multi = await run(
      {
        verifier: {
          plugin: 'builtin:multi',
          config: {
            graders: {
              exact: { plugin: 'builtin:exact', config: { extract: 'whole' } },
              rouge: { plugin: 'builtin:text-similarity', config: { metric: 'rouge_1' } },
            },
            calculate_output: 'max(exact, 0.5 * rouge)',
          },
        },
        cases: [{ response: 'the cat sat on the mat', reference: 'the cat sat on a mat' }],
      },
      200,
    );
    // exact 0, ROUGE-1 F1 5/6 → max(0, 5/12)
    expect(multi.results[0]!.verification!.score).toBeCloseTo(5 / 12, 12);

    const badFormula = await run(
      {
        verifier: {
          plugin: 'builtin:multi',
          config: { graders: { a: { plugin: 'builtin:exact' } }, calculate_output: 'a + constructor' },
        },
        cases: [{ response: 'a', reference: 'a' }],
      },
      400,
    );
    expect(badFormula.error.fields[0]!.path).toBe('verifier.config.calculate_output');

    const judge = await run(
      {
        verifier: {
          plugin: 'builtin:score-model',
          config: {
            endpoint_url: 'http://127.0.0.1:1/v1',
            messages: [{ role: 'user', content: 'Score {response}' }],
          },
        },
        cases: [{ response: 'a', reference: 'a' }],
      },
      422,
    );
    expect(judge.error.code).toBe('dry_run_unsupported');
    expect(judge.error.message).toContain('a judge LLM endpoint with a token only a runner holds');
    expect(judge.error.fields).toEqual([
      { path: 'verifier.plugin', message: 'not available in the dry run' },
    ]);
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

    const full = await run(
      {
        verifier,
        cases: Array.from({ length: 100 }, (_, i) => ({ response: `Answer: ${i}`, reference: '7' })),
      },
      200,
    );
    expect(full.results.filter((r) => r.verification?.correct)).toHaveLength(1);

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
