import { describe, expect, it } from 'vitest';
import {
  expectJson,
  type JobBody,
  minimalSpec,
  newAccount,
  newRunner,
  type TestAccount,
  testEnv,
} from './helpers';

// POST /v1/jobs answers 201 with `warnings` (and records a `job.warning` event) when no runner of the
// account seen in the last 15 minutes advertises the job's model: a runner advertises a model with a
// `model:<id>` capability, and one without any `model:` capability loads any model.

type Warned = JobBody & { warnings?: { code: string; field: string; message: string }[] };

async function submit(account: TestAccount, modelId: string) {
  return expectJson<Warned>('/v1/jobs', 201, {
    key: account.apiKey,
    json: minimalSpec({ model: { id: modelId } }),
  });
}

async function eventTypes(account: TestAccount, jobId: string) {
  const events = await expectJson<{ data: { type: string; data: Record<string, unknown> }[] }>(
    `/v1/jobs/${jobId}/events`,
    200,
    { key: account.apiKey },
  );
  return events.data;
}

describe('POST /v1/jobs: no runner advertises the model', () => {
  it('warns in the 201 answer and records job.warning when the account has no runner', async () => {
    const account = await newAccount();
    const job = await submit(account, 'Qwen/Qwen3-0.6B');
    expect(job.status).toBe('queued');
    expect(job.warnings).toEqual([
      { code: 'no_runner_for_model', field: 'model.id', message: expect.stringMatching(/start one/) },
    ]);
    const events = await eventTypes(account, job.id);
    expect(events.map((e) => e.type)).toEqual(['job.queued', 'job.warning']);
    expect(events[1]?.data).toMatchObject({ code: 'no_runner_for_model', field: 'model.id' });
    // GET shows the job without the submission-time warnings
    const fetched = await expectJson<Warned>(`/v1/jobs/${job.id}`, 200, { key: account.apiKey });
    expect(fetched.warnings).toBeUndefined();
  });

  it('does not warn when a recent runner lists no model: capability (it loads any model)', async () => {
    const account = await newAccount();
    await newRunner(account, [], ['cpu']);
    const job = await submit(account, 'Qwen/Qwen3-0.6B');
    expect(job.warnings).toBeUndefined();
    expect((await eventTypes(account, job.id)).map((e) => e.type)).toEqual(['job.queued']);
  });

  it('checks model:<id> capabilities, and ignores runners not seen recently or revoked', async () => {
    const account = await newAccount();
    const runner = await newRunner(account, [], ['cpu', 'model:starter']);
    expect((await submit(account, 'starter')).warnings).toBeUndefined();
    const other = await submit(account, 'Qwen/Qwen3-0.6B');
    expect(other.warnings?.[0]?.message).toMatch(
      /advertises model Qwen\/Qwen3-0\.6B.*model:Qwen\/Qwen3-0\.6B/,
    );

    // the same runner, last seen 16 minutes ago: no longer counts
    await testEnv.DB.prepare('UPDATE runners SET last_seen_at = ?1 WHERE id = ?2')
      .bind(Date.now() - 16 * 60_000, runner.id)
      .run();
    expect((await submit(account, 'starter')).warnings?.[0]?.message).toMatch(/no runner of this account/);

    // a revoked runner that any model would fit does not count either
    const any = await newRunner(account, [], ['cpu']);
    await testEnv.DB.prepare('UPDATE runners SET revoked_at = ?1 WHERE id = ?2')
      .bind(Date.now(), any.id)
      .run();
    expect((await submit(account, 'starter')).warnings).toHaveLength(1);
  });

  it("another account's runner does not count", async () => {
    const mine = await newAccount();
    const theirs = await newAccount();
    await newRunner(theirs, [], ['cpu']);
    expect((await submit(mine, 'starter')).warnings).toHaveLength(1);
  });
});
