import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test';
import { API_KEY_SCOPES, type ApiKeyScope } from '@cgrpo/contract';
import { describe, expect, it } from 'vitest';
import { app } from '../src/index';
import {
  type CallOptions,
  call,
  expectJson,
  type JobBody,
  lease,
  minimalSpec,
  newAccount,
  newRunner,
  type TestAccount,
  testEnv,
} from './helpers';

// API keys with scopes (one route of every group, allowed and refused) and spend limits (refused
// at submission on the estimate; a running job pausing when the key's jobs reach the limit).

interface CreatedKey {
  id: string;
  key: string;
  scopes: ApiKeyScope[];
  spend_limit_usd: number | null;
  spent_usd: number;
}

async function newKey(account: TestAccount, body: Record<string, unknown>): Promise<CreatedKey> {
  return expectJson<CreatedKey>('/v1/keys', 201, { key: account.apiKey, json: { name: 'k', ...body } });
}

/** One route of each group and the scope it needs (null = any key). */
const ROUTES: { method: string; path: string; json?: unknown; scope: ApiKeyScope | null }[] = [
  { method: 'GET', path: '/v1/account', scope: null },
  { method: 'GET', path: '/v1/jobs', scope: 'jobs:read' },
  { method: 'POST', path: '/v1/jobs/estimate', json: { spec: minimalSpec() }, scope: 'jobs:read' },
  { method: 'POST', path: '/v1/jobs', json: minimalSpec(), scope: 'jobs:write' },
  { method: 'GET', path: '/v1/artifacts', scope: 'datasets:read' },
  { method: 'POST', path: '/v1/artifacts/uploads', json: {}, scope: 'datasets:write' },
  { method: 'GET', path: '/v1/plugins', scope: 'plugins:read' },
  { method: 'POST', path: '/v1/plugins/run', json: {}, scope: 'plugins:write' },
  { method: 'GET', path: '/v1/webhooks/endpoints', scope: 'webhooks:read' },
  { method: 'POST', path: '/v1/webhooks/endpoints', json: {}, scope: 'webhooks:write' },
  { method: 'GET', path: '/v1/runners', scope: 'runner' },
  { method: 'POST', path: '/v1/runner-keys', json: { name: 'r' }, scope: 'runner' },
  { method: 'GET', path: '/v1/keys', scope: 'admin' },
];

describe('API key scopes', () => {
  it('a key without scopes has all of them (the behaviour before scopes), and scopes are a closed list', async () => {
    const account = await newAccount();
    const all = await newKey(account, {});
    expect(all.scopes).toEqual([...API_KEY_SCOPES]);
    expect(all.spend_limit_usd).toBeNull();
    const listed = await expectJson<{ data: CreatedKey[] }>('/v1/keys', 200, { key: account.apiKey });
    expect(listed.data.every((k) => k.scopes.length === API_KEY_SCOPES.length)).toBe(true);
    const bad = await expectJson<{ error: { code: string; fields: { path: string; message: string }[] } }>(
      '/v1/keys',
      400,
      { key: account.apiKey, json: { scopes: ['jobs:delete'] } },
    );
    expect(bad.error.fields[0]!.path).toBe('scopes.0');
    expect(bad.error.fields[0]!.message).toContain('jobs:write');
  });

  it('each route group is allowed with its scope and refused with 403 insufficient_scope naming it otherwise', async () => {
    const account = await newAccount();
    const keys = new Map<ApiKeyScope, string>();
    for (const scope of API_KEY_SCOPES) keys.set(scope, (await newKey(account, { scopes: [scope] })).key);
    for (const route of ROUTES) {
      for (const [scope, key] of keys) {
        const res = await call(route.path, { method: route.method, key, json: route.json });
        const allowed = route.scope === null || route.scope === scope || scope === 'admin';
        const text = await res.text();
        if (allowed) {
          expect(res.status, `${route.method} ${route.path} with ${scope}: ${text}`).not.toBe(403);
          expect(res.status).not.toBe(401);
        } else {
          expect(res.status, `${route.method} ${route.path} with ${scope}: ${text}`).toBe(403);
          const body = JSON.parse(text) as { error: { code: string; message: string } };
          expect(body.error.code).toBe('insufficient_scope');
          expect(body.error.message).toContain(`'${route.scope}'`);
        }
      }
    }
  });

  it('a key with several scopes gets each of them and nothing else', async () => {
    const account = await newAccount();
    const { key } = await newKey(account, { scopes: ['jobs:read', 'jobs:write'] });
    const job = await expectJson<JobBody>('/v1/jobs', 201, { key, json: minimalSpec() });
    await expectJson(`/v1/jobs/${job.id}`, 200, { key });
    await expectJson(`/v1/jobs/${job.id}/cancel`, 200, { key, json: {} });
    const refused = await expectJson<{ error: { code: string } }>('/v1/keys', 403, {
      key,
      json: { name: 'escalate' },
    });
    expect(refused.error.code).toBe('insufficient_scope');
  });
});

/** A small job the estimate prices at $0.0035: 1 prompt × (2 + 1 refinement) × 5 tokens × 2 steps at $100/Mtok generated… */
const smallJob = (extra: Record<string, unknown> = {}) =>
  minimalSpec({
    budgets: { prices: { generated_mtok_usd: 100 } },
    hyperparameters: {
      prompts_per_step: 1,
      mini_batches_per_step: 1,
      group_size: 2,
      max_response_tokens: 10,
      total_steps: 2,
    },
    ...extra,
  });

describe('API key spend limits', () => {
  it('refuses a submission whose estimate plus the key spend so far exceeds the limit (402), other keys unaffected', async () => {
    const account = await newAccount();
    const est = await expectJson<{ cost_usd: number; generated_tokens: number }>('/v1/jobs/estimate', 200, {
      key: account.apiKey,
      json: { spec: smallJob() },
    });
    // 1 prompt × (2 responses + 1 refinement) × 5 tokens × 2 steps = 30 tokens × $100/Mtok
    expect(est.generated_tokens).toBe(30);
    expect(est.cost_usd).toBeCloseTo(0.003, 9);
    const tight = await newKey(account, { scopes: ['jobs:write', 'jobs:read'], spend_limit_usd: 0.0029 });
    expect(tight.spend_limit_usd).toBe(0.0029);
    const refused = await expectJson<{ error: { code: string; message: string } }>('/v1/jobs', 402, {
      key: tight.key,
      json: smallJob(),
    });
    expect(refused.error.code).toBe('key_spend_limit_exceeded');
    expect(refused.error.message).toContain('$0.003');
    expect(refused.error.message).toContain('$0.0029');
    // exactly at the limit is allowed
    const exact = await newKey(account, { spend_limit_usd: 0.003 });
    await expectJson('/v1/jobs', 201, { key: exact.key, json: smallJob() });
    await expectJson('/v1/jobs', 201, { key: account.apiKey, json: smallJob() });
    // the job counts against the key: a second one no longer fits (0 spent + 0.003 was the room)
    const second = await expectJson<{ error: { code: string } }>('/v1/jobs', 402, {
      key: exact.key,
      json: smallJob({
        budgets: { prices: { generated_mtok_usd: 100 } },
        hyperparameters: { total_steps: 1000 },
      }),
    });
    expect(second.error.code).toBe('key_spend_limit_exceeded');
  });

  it("a running job pauses with job.budget_reached (key_spend_limit) when the key's jobs together reach the limit", async () => {
    const account = await newAccount();
    const key = await newKey(account, { spend_limit_usd: 0.25 });
    const runnerA = await newRunner(account);
    const runnerB = await newRunner(account);
    const step = (s: number) => ({ step: s, values: { 'tokens/generated': 1000 } }); // $0.1 at $100/Mtok
    const start = async (runner: { token: string }) => {
      const job = await expectJson<JobBody>('/v1/jobs', 201, { key: key.key, json: smallJob() });
      const leased = await lease(runner.token);
      expect(leased?.job_id).toBe(job.id);
      const report = (points: ReturnType<typeof step>[]) =>
        expectJson(`/v1/runner/jobs/${job.id}/metrics`, 200, {
          key: runner.token,
          json: { lease_id: leased!.lease_id, attempt: 1, points },
        });
      return { job, report };
    };
    const paused = async (jobId: string) =>
      (await expectJson<{ pause_requested: boolean }>(`/v1/jobs/${jobId}`, 200, { key: account.apiKey }))
        .pause_requested;
    const reached = async (jobId: string) =>
      (
        await expectJson<{ data: { type: string; data: Record<string, unknown> }[] }>(
          `/v1/jobs/${jobId}/events?limit=1000`,
          200,
          { key: account.apiKey },
        )
      ).data.filter((e) => e.type === 'job.budget_reached');

    const a = await start(runnerA);
    await a.report([step(0), step(1)]); // key spent 0.2 < 0.25
    expect(await paused(a.job.id)).toBe(false);
    const keys = await expectJson<{ data: CreatedKey[] }>('/v1/keys', 200, { key: account.apiKey });
    expect(keys.data.find((k) => k.id === key.id)!.spent_usd).toBeCloseTo(0.2, 9);

    const b = await start(runnerB); // 0.2 spent + 0.003 estimated fits under 0.25
    await b.report([step(0)]); // key spent 0.3 ≥ 0.25: B pauses
    expect(await paused(b.job.id)).toBe(true);
    const events = await reached(b.job.id);
    expect(events).toHaveLength(1);
    expect(events[0]!.data).toMatchObject({
      budget: 'key_spend_limit',
      reason: 'key_spend_limit',
      key_id: key.id,
      limit: 0.25,
      action: 'pause',
    });
    expect(events[0]!.data.used as number).toBeCloseTo(0.3, 9);
    await b.report([step(1)]); // still over: no second event
    expect(await reached(b.job.id)).toHaveLength(1);
    // A pauses at its next report too, and the key refuses new jobs
    await a.report([step(2)]);
    expect(await paused(a.job.id)).toBe(true);
    const refused = await expectJson<{ error: { code: string } }>('/v1/jobs', 402, {
      key: key.key,
      json: smallJob(),
    });
    expect(refused.error.code).toBe('key_spend_limit_exceeded');
  });
});

/** Requests into the Worker with a PRICE_TABLE setting (the worker's own fetch, real D1, inside workerd). */
function withPriceTable(priceTable: string) {
  const env = { ...testEnv, PRICE_TABLE: priceTable };
  const callPriced = async (path: string, options: CallOptions = {}) => {
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    if (options.key) headers.authorization = `Bearer ${options.key}`;
    if (options.json !== undefined) headers['content-type'] = 'application/json';
    const body = options.json !== undefined ? JSON.stringify(options.json) : undefined;
    const ctx = createExecutionContext();
    const req = new Request(`http://api.test${path}`, {
      method: options.method ?? (body ? 'POST' : 'GET'),
      headers,
      body,
    });
    const res = await app.fetch(req, env, ctx);
    await waitOnExecutionContext(ctx);
    return res;
  };
  const expectPriced = async <T = Record<string, unknown>>(
    path: string,
    status: number,
    options: CallOptions = {},
  ): Promise<T> => {
    const res = await callPriced(path, options);
    const text = await res.text();
    expect(res.status, `${options.method ?? 'GET'} ${path} → ${text}`).toBe(status);
    return (text ? JSON.parse(text) : null) as T;
  };
  return { call: callPriced, expectJson: expectPriced };
}

describe('API key spend limits with a deployment price table', () => {
  it('a job with no prices is charged at deployment prices, pauses at its key limit, cannot resume until PATCH raises it', async () => {
    const priced = withPriceTable(JSON.stringify({ generated_mtok_usd: 100 }));
    const account = await newAccount();
    const key = await newKey(account, { scopes: ['jobs:read', 'jobs:write'], spend_limit_usd: 0.25 });
    const runner = await newRunner(account);
    // no budgets block: before deployment prices this job cost $0 whatever it generated
    const spec = minimalSpec({
      hyperparameters: {
        prompts_per_step: 1,
        mini_batches_per_step: 1,
        group_size: 2,
        max_response_tokens: 10,
        total_steps: 100,
      },
    });
    // the submission estimate is priced at deployment prices too: 100 steps × 15 tokens × $100/M
    const est = await priced.expectJson<{ cost_usd: number }>('/v1/jobs/estimate', 200, {
      key: key.key,
      json: { spec },
    });
    expect(est.cost_usd).toBeCloseTo(0.15, 9);
    const job = await priced.expectJson<JobBody>('/v1/jobs', 201, { key: key.key, json: spec });
    const leased = await lease(runner.token);
    expect(leased?.job_id).toBe(job.id);
    const report = (s: number) =>
      priced.expectJson(`/v1/runner/jobs/${job.id}/metrics`, 200, {
        key: runner.token,
        json: {
          lease_id: leased!.lease_id,
          attempt: 1,
          points: [{ step: s, values: { 'tokens/generated': 1000 } }],
        },
      });
    const state = async () =>
      priced.expectJson<{ pause_requested: boolean; status: string }>(`/v1/jobs/${job.id}`, 200, {
        key: account.apiKey,
      });
    const reached = async () =>
      (
        await priced.expectJson<{ data: { type: string; data: Record<string, unknown> }[] }>(
          `/v1/jobs/${job.id}/events?limit=1000`,
          200,
          { key: account.apiKey },
        )
      ).data.filter((e) => e.type === 'job.budget_reached');

    await report(0); // $0.1
    await report(1); // $0.2 < $0.25
    expect((await state()).pause_requested).toBe(false);
    await report(2); // $0.3 ≥ $0.25
    expect((await state()).pause_requested).toBe(true);
    const first = await reached();
    expect(first).toHaveLength(1);
    expect(first[0]!.data).toMatchObject({ reason: 'key_spend_limit', key_id: key.id, limit: 0.25 });
    expect(first[0]!.data.used as number).toBeCloseTo(0.3, 9);
    // budget/cost is stored though the job has no budgets block
    const cost = await priced.expectJson<{ data: { values: Record<string, number> }[] }>(
      `/v1/jobs/${job.id}/metrics?names=budget/cost`,
      200,
      { key: account.apiKey },
    );
    expect(cost.data.map((p) => p.values['budget/cost'])).toEqual([0.1, 0.2, 0.3]);

    // a resume without room is refused up front, saying how to raise the limit; the job stays paused
    const noRoom = await priced.expectJson<{ error: { code: string; message: string } }>(
      `/v1/jobs/${job.id}/resume`,
      402,
      { key: account.apiKey, json: {} },
    );
    expect(noRoom.error.code).toBe('key_spend_limit_exceeded');
    expect(noRoom.error.message).toContain(`PATCH /v1/keys/${key.id}`);
    const viaBudgets = await priced.expectJson<{ error: { code: string } }>(
      `/v1/jobs/${job.id}/budgets`,
      402,
      {
        key: account.apiKey,
        json: { budgets: {}, resume: true },
      },
    );
    expect(viaBudgets.error.code).toBe('key_spend_limit_exceeded');
    expect((await state()).pause_requested).toBe(true);
    await report(3); // $0.4: the runner's last report before it stops
    expect((await state()).pause_requested).toBe(true);

    // only an admin key changes limits; the limited key cannot raise its own
    const refused = await priced.expectJson<{ error: { code: string } }>(`/v1/keys/${key.id}`, 403, {
      key: key.key,
      method: 'PATCH',
      json: { spend_limit_usd: 100 },
    });
    expect(refused.error.code).toBe('insufficient_scope');
    const raised = await priced.expectJson<CreatedKey>(`/v1/keys/${key.id}`, 200, {
      key: account.apiKey,
      method: 'PATCH',
      json: { spend_limit_usd: 1 },
    });
    expect(raised.spend_limit_usd).toBe(1);
    expect(raised.spent_usd).toBeCloseTo(0.4, 9);
    await priced.expectJson(`/v1/jobs/${job.id}/resume`, 200, { key: account.apiKey, json: {} });
    await report(4); // $0.5 < $1: keeps running
    expect((await state()).pause_requested).toBe(false);
    expect(await reached()).toHaveLength(1);

    // lowering it below the spend pauses the running job at its next report, with a new event
    await priced.expectJson(`/v1/keys/${key.id}`, 200, {
      key: account.apiKey,
      method: 'PATCH',
      json: { spend_limit_usd: 0.55 },
    });
    await report(5); // $0.6 ≥ $0.55
    expect((await state()).pause_requested).toBe(true);
    const second = await reached();
    expect(second).toHaveLength(2);
    expect(second[1]!.data).toMatchObject({ reason: 'key_spend_limit', limit: 0.55 });

    // null removes the limit
    const unlimited = await priced.expectJson<CreatedKey>(`/v1/keys/${key.id}`, 200, {
      key: account.apiKey,
      method: 'PATCH',
      json: { spend_limit_usd: null },
    });
    expect(unlimited.spend_limit_usd).toBeNull();
  });

  it('a job naming prices of 0 is still charged at deployment prices', async () => {
    const priced = withPriceTable(JSON.stringify({ generated_mtok_usd: 100 }));
    const account = await newAccount();
    const key = await newKey(account, { spend_limit_usd: 0.15 });
    const runner = await newRunner(account);
    const job = await priced.expectJson<JobBody>('/v1/jobs', 201, {
      key: key.key,
      json: smallJob({ budgets: { prices: { generated_mtok_usd: 0 } } }),
    });
    const leased = await lease(runner.token);
    expect(leased?.job_id).toBe(job.id);
    await priced.expectJson(`/v1/runner/jobs/${job.id}/metrics`, 200, {
      key: runner.token,
      json: {
        lease_id: leased!.lease_id,
        attempt: 1,
        points: [0, 1].map((step) => ({ step, values: { 'tokens/generated': 1000 } })),
      },
    });
    const after = await priced.expectJson<{ pause_requested: boolean }>(`/v1/jobs/${job.id}`, 200, {
      key: account.apiKey,
    });
    expect(after.pause_requested).toBe(true);
  });

  it('PATCH /v1/keys/{id} validates the limit and the key', async () => {
    const account = await newAccount();
    const key = await newKey(account, { spend_limit_usd: 1 });
    for (const body of [{ spend_limit_usd: 0 }, { spend_limit_usd: -2 }, { spend_limit_usd: '5' }, {}]) {
      const bad = await expectJson<{ error: { code: string; fields: { path: string; message: string }[] } }>(
        `/v1/keys/${key.id}`,
        400,
        { key: account.apiKey, method: 'PATCH', json: body },
      );
      expect(bad.error.fields[0]!.path, JSON.stringify(body)).toBe('spend_limit_usd');
    }
    const extra = await expectJson<{ error: { fields: { path: string }[] } }>(`/v1/keys/${key.id}`, 400, {
      key: account.apiKey,
      method: 'PATCH',
      json: { spend_limit_usd: 2, scopes: ['admin'] },
    });
    expect(JSON.stringify(extra.error.fields)).toContain('scopes');
    await expectJson(`/v1/keys/key_nope`, 404, {
      key: account.apiKey,
      method: 'PATCH',
      json: { spend_limit_usd: 2 },
    });
    // another account's key is not found either
    const other = await newAccount();
    await expectJson(`/v1/keys/${key.id}`, 404, {
      key: other.apiKey,
      method: 'PATCH',
      json: { spend_limit_usd: 2 },
    });
    await expectJson(`/v1/keys/${key.id}`, 200, { key: account.apiKey, method: 'DELETE' });
    const revoked = await expectJson<{ error: { code: string } }>(`/v1/keys/${key.id}`, 409, {
      key: account.apiKey,
      method: 'PATCH',
      json: { spend_limit_usd: 2 },
    });
    expect(revoked.error.code).toBe('key_revoked');
  });
});

describe('the PRICE_TABLE setting', () => {
  it('GET /v1/jobs/prices shows a valid deployment table; an invalid one is ignored with a warning and never a 5xx', async () => {
    const account = await newAccount();
    const valid = await withPriceTable('{"generated_mtok_usd": 100}').expectJson<{
      source: string;
      table: Record<string, unknown> | null;
      warning: string | null;
    }>('/v1/jobs/prices', 200, { key: account.apiKey });
    expect(valid).toMatchObject({ source: 'deployment', warning: null, table: { generated_mtok_usd: 100 } });

    const invalid = ['{not json', '{"generated_mtok_usd": -1}', '{"bogus": 1}', '[1]', '"2.5"'];
    for (const [i, setting] of invalid.entries()) {
      const priced = withPriceTable(setting);
      const prices = await priced.expectJson<{ source: string; table: unknown; warning: string }>(
        '/v1/jobs/prices',
        200,
        { key: account.apiKey },
      );
      expect(prices.source, setting).toBe('job');
      expect(prices.table).toBeNull();
      expect(prices.warning).toMatch(/^PRICE_TABLE is not (JSON|a valid price table)/);
      // every route that prices still answers, falling back to the job's own prices
      const spec = smallJob();
      const est = await priced.expectJson<{ cost_usd: number }>('/v1/jobs/estimate', 200, {
        key: account.apiKey,
        json: { spec },
      });
      expect(est.cost_usd).toBeCloseTo(0.003, 9);
      const runner = await newRunner(account);
      const job = await priced.expectJson<JobBody>('/v1/jobs', 201, { key: account.apiKey, json: spec });
      const leased = await lease(runner.token);
      expect(leased?.job_id, `setting ${i}`).toBe(job.id);
      await priced.expectJson(`/v1/runner/jobs/${job.id}/metrics`, 200, {
        key: runner.token,
        json: {
          lease_id: leased!.lease_id,
          attempt: 1,
          points: [{ step: 0, values: { 'tokens/generated': 1000 } }],
        },
      });
      const cost = await priced.expectJson<{ data: { values: Record<string, number> }[] }>(
        `/v1/jobs/${job.id}/metrics?names=budget/cost`,
        200,
        { key: account.apiKey },
      );
      expect(cost.data.map((p) => p.values['budget/cost'])).toEqual([0.1]);
    }
    // no setting: the warning says what that means for key limits
    const none = await expectJson<{ source: string; warning: string }>('/v1/jobs/prices', 200, {
      key: account.apiKey,
    });
    expect(none.source).toBe('job');
    expect(none.warning).toContain('spend limits');
  });

  it("with a deployment table, a job's own budgets.prices are ignored for its cost and max_cost_usd", async () => {
    const priced = withPriceTable(
      JSON.stringify({ generated_mtok_usd: 10, runners: { h100: { generated_mtok_usd: 20 } } }),
    );
    const account = await newAccount();
    const runner = await newRunner(account, ['h100']);
    const job = await priced.expectJson<JobBody>('/v1/jobs', 201, {
      key: account.apiKey,
      json: smallJob({ budgets: { max_cost_usd: 0.05, prices: { generated_mtok_usd: 1_000_000 } } }),
    });
    const leased = await lease(runner.token);
    expect(leased?.job_id).toBe(job.id);
    const report = (step: number) =>
      priced.expectJson(`/v1/runner/jobs/${job.id}/metrics`, 200, {
        key: runner.token,
        json: {
          lease_id: leased!.lease_id,
          attempt: 1,
          points: [{ step, values: { 'tokens/generated': 1000 } }],
        },
      });
    await report(0); // 1000 × $20/M (the h100 label) = $0.02
    await report(1);
    let state = await priced.expectJson<{ pause_requested: boolean }>(`/v1/jobs/${job.id}`, 200, {
      key: account.apiKey,
    });
    expect(state.pause_requested).toBe(false);
    await report(2); // $0.06 ≥ $0.05
    state = await priced.expectJson(`/v1/jobs/${job.id}`, 200, { key: account.apiKey });
    expect(state.pause_requested).toBe(true);
    const cost = await priced.expectJson<{ data: { values: Record<string, number> }[] }>(
      `/v1/jobs/${job.id}/metrics?names=budget/cost`,
      200,
      { key: account.apiKey },
    );
    expect(cost.data.map((p) => p.values['budget/cost'])).toEqual([0.02, 0.04, 0.06]);
  });
});
