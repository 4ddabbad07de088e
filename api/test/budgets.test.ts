import { describe, expect, it } from 'vitest';
import { costSeries, jobPrices } from '../src/budgets';
import {
  expectJson,
  type JobBody,
  lease,
  newAccount,
  newRunner,
  submitJob,
  type TestAccount,
} from './helpers';

// Budgets and health alarms, driven through the runner routes the way a runner reports metrics.

type Event = { type: string; data: Record<string, unknown> };

async function runningJob(spec: Record<string, unknown>, labels: string[] = [], capabilities: string[] = []) {
  const account = await newAccount();
  const runner = await newRunner(account, labels, capabilities);
  const job = await submitJob(account, spec);
  const leased = await lease(runner.token);
  expect(leased?.job_id).toBe(job.id);
  const report = (points: { step: number; values: Record<string, number> }[]) =>
    expectJson(`/v1/runner/jobs/${job.id}/metrics`, 200, {
      key: runner.token,
      json: { lease_id: leased!.lease_id, attempt: 1, points },
    });
  return { account, runner, job, leased: leased!, report };
}

async function events(account: TestAccount, jobId: string): Promise<Event[]> {
  const body = await expectJson<{ data: Event[] }>(`/v1/jobs/${jobId}/events?limit=1000`, 200, {
    key: account.apiKey,
  });
  return body.data;
}

const rlStep = (step: number, extra: Record<string, number> = {}) => ({
  step,
  values: {
    'tokens/generated': 1000,
    'tokens/trained': 800,
    'reward/mean': 0.5,
    'pass@1/train': 0.5,
    'groups/zero_signal': 1,
    entropy: 0.8,
    'response_length/mean': 100,
    ...extra,
  },
});

describe('budgets', () => {
  it('a job over its generated-token cap gets a pause request and one job.budget_reached; raising the cap lifts it', async () => {
    const { account, job, report } = await runningJob({
      budgets: { max_generated_tokens: 2500, prices: { generated_mtok_usd: 2 } },
      hyperparameters: { prompts_per_step: 4 },
    });
    await report([rlStep(0), rlStep(1)]);
    let after = await expectJson<JobBody & { pause_requested: boolean }>(`/v1/jobs/${job.id}`, 200, {
      key: account.apiKey,
    });
    expect(after.pause_requested).toBe(false);
    expect((await events(account, job.id)).filter((e) => e.type === 'job.budget_reached')).toHaveLength(0);

    await report([rlStep(2)]); // 3000 generated ≥ 2500
    await report([rlStep(3)]); // still over: no second event for the same cap
    after = await expectJson(`/v1/jobs/${job.id}`, 200, { key: account.apiKey });
    expect(after.pause_requested).toBe(true);
    const reached = (await events(account, job.id)).filter((e) => e.type === 'job.budget_reached');
    expect(reached).toHaveLength(1);
    expect(reached[0]!.data).toMatchObject({
      budget: 'generated_tokens',
      limit: 2500,
      used: 3000,
      action: 'pause',
      usage: { generated_tokens: 3000, trained_tokens: 2400, cost_usd: 0.006 },
    });
    const types = (await events(account, job.id)).map((e) => e.type);
    expect(types).toContain('job.pause_requested');

    // raise the cap and withdraw the pause request
    const raised = await expectJson<{
      pause_requested: boolean;
      spec: { budgets: { max_generated_tokens: number } };
    }>(`/v1/jobs/${job.id}/budgets`, 200, {
      key: account.apiKey,
      json: { budgets: { max_generated_tokens: 10_000 }, resume: true },
    });
    expect(raised.pause_requested).toBe(false);
    expect(raised.spec.budgets.max_generated_tokens).toBe(10_000);
    await report([rlStep(4)]);
    expect((await events(account, job.id)).filter((e) => e.type === 'job.budget_reached')).toHaveLength(1);
  });

  it('estimates tokens, time and cost of a spec', async () => {
    const account = await newAccount();
    const est = await expectJson<Record<string, number>>('/v1/jobs/estimate', 200, {
      key: account.apiKey,
      json: {
        runner_class: 'cpu',
        spec: {
          algorithm: 'grpo',
          model: { id: 'tiny-qwen3' },
          datasets: { train: { uri: 'https://example.test/t.jsonl' } },
          budgets: { prices: { runner_hour_usd: 3.6, generated_mtok_usd: 1 } },
          hyperparameters: { prompts_per_step: 2, group_size: 4, max_response_tokens: 100, total_steps: 10 },
        },
      },
    });
    // 2 prompts × 4 responses × 50 tokens × 10 steps
    expect(est.generated_tokens).toBe(4000);
    expect(est.trained_tokens).toBe(4000);
    // 4000/50 + 4000/400 = 90 s; 90 s × $3.6/h + 0.004 Mtok × $1
    expect(est.runner_seconds).toBe(90);
    expect(est.cost_usd).toBeCloseTo(0.094, 6);
  });
});

describe('critic tokens and live cost', () => {
  it('pauses on max_critic_tokens with one job.budget_reached', async () => {
    const { account, job, report } = await runningJob({
      budgets: { max_critic_tokens: 500 },
      hyperparameters: { prompts_per_step: 4 },
    });
    await report([rlStep(0, { 'budget/critic_tokens': 300 })]);
    let after = await expectJson<{ pause_requested: boolean }>(`/v1/jobs/${job.id}`, 200, {
      key: account.apiKey,
    });
    expect(after.pause_requested).toBe(false);
    await report([rlStep(1, { 'budget/critic_tokens': 200 })]); // 500 ≥ 500
    after = await expectJson(`/v1/jobs/${job.id}`, 200, { key: account.apiKey });
    expect(after.pause_requested).toBe(true);
    const reached = (await events(account, job.id)).filter((e) => e.type === 'job.budget_reached');
    expect(reached).toHaveLength(1);
    expect(reached[0]!.data).toMatchObject({
      budget: 'critic_tokens',
      reason: 'job_budget',
      limit: 500,
      used: 500,
      usage: { critic_tokens: 500 },
    });
  });

  it('stores budget/cost on each point from the runner label and LLM endpoint prices', async () => {
    const endpoint = 'http://127.0.0.1:9/v1';
    const { account, job, report } = await runningJob(
      {
        critic: { plugin: 'builtin:llm', grants: ['llm.chat'], config: { endpoint_url: endpoint } },
        budgets: {
          max_cost_usd: 0.02,
          prices: {
            generated_mtok_usd: 100,
            trained_mtok_usd: 100,
            runners: {
              'gpu-a': { generated_mtok_usd: 2, trained_mtok_usd: 1 },
              'gpu-b': { generated_mtok_usd: 50 },
            },
            llm_mtok_usd: { [endpoint]: 10, '*': 1000 },
          },
        },
        hyperparameters: { prompts_per_step: 4 },
      },
      ['cpu-x', 'gpu-a', 'gpu-b'],
      ['llm.chat'],
    );
    // gpu-a is the runner's first priced label: 1000 gen × $2/M + 800 trained × $1/M + 300 critic × $10/M
    await report([rlStep(0, { 'budget/critic_tokens': 300 }), rlStep(1, { 'budget/critic_tokens': 300 })]);
    await report([rlStep(2, { 'budget/critic_tokens': 300 })]);
    const series = await expectJson<{ data: { step: number; values: Record<string, number> }[] }>(
      `/v1/jobs/${job.id}/metrics?names=budget/cost`,
      200,
      { key: account.apiKey },
    );
    expect(series.data.map((p) => p.values['budget/cost'])).toEqual([0.0058, 0.0116, 0.0174]);
    expect((await events(account, job.id)).filter((e) => e.type === 'job.budget_reached')).toHaveLength(0);
    await report([rlStep(3, { 'budget/critic_tokens': 300 })]); // 0.0232 ≥ 0.02
    const reached = (await events(account, job.id)).filter((e) => e.type === 'job.budget_reached');
    expect(reached).toHaveLength(1);
    expect(reached[0]!.data).toMatchObject({ budget: 'cost_usd', limit: 0.02, usage: { cost_usd: 0.0232 } });
  });

  it('costSeries: usage up to each point, runner seconds over attempts, from a price table by hand', () => {
    const prices = jobPrices(
      {
        runner_hour_usd: 3.6,
        generated_mtok_usd: 1,
        trained_mtok_usd: 0,
        runners: { big: { runner_hour_usd: 36 } },
        llm_mtok_usd: { '*': 2 },
      },
      ['big'],
      'https://llm.example/v1',
    );
    expect(prices).toEqual({
      runner_hour_usd: 36,
      generated_mtok_usd: 1,
      trained_mtok_usd: 0,
      llm_mtok_usd: 2,
    });
    const point = (attempt: number, step: number, at: number, v: Record<string, number>) => ({
      attempt,
      step,
      created_at: at,
      values: JSON.stringify(v),
    });
    const rows = [
      point(2, 1, 40_000, { 'tokens/generated': 1_000_000 }),
      point(1, 0, 10_000, { 'tokens/generated': 1_000_000, 'budget/critic_tokens': 500_000 }),
      point(1, 1, 20_000, { 'tokens/generated': 1_000_000 }),
    ];
    // attempt 1 started at 0 s, attempt 2 at 30 s; $36/h = $0.01/s
    const series = costSeries(
      rows,
      new Map([
        [1, 0],
        [2, 30_000],
      ]),
      prices,
    );
    expect(series.map((p) => [p.attempt, p.step, p.usage.runner_seconds])).toEqual([
      [1, 0, 10],
      [1, 1, 20],
      [2, 1, 30],
    ]);
    // 10 s × 0.01 + 1 Mtok × $1 + 0.5 Mtok critic × $2 = 2.1; then 0.2 + 2 + 1 = 3.2; then 0.3 + 3 + 1 = 4.3
    expect(series.map((p) => Math.round(p.usage.cost_usd * 1e9) / 1e9)).toEqual([2.1, 3.2, 4.3]);
  });
});

describe('health alarms', () => {
  it('fires job.alarm with evidence when entropy collapses, once', async () => {
    const { account, job, report } = await runningJob({ hyperparameters: { prompts_per_step: 4 } });
    await report([rlStep(0, { entropy: 0.9 }), rlStep(1, { entropy: 0.5 }), rlStep(2, { entropy: 0.2 })]);
    expect((await events(account, job.id)).filter((e) => e.type === 'job.alarm')).toHaveLength(0);
    await report([rlStep(3, { entropy: 0.009 }), rlStep(4, { entropy: 0.004 })]);
    expect((await events(account, job.id)).filter((e) => e.type === 'job.alarm')).toHaveLength(0);
    await report([rlStep(5, { entropy: 0.002 })]);
    await report([rlStep(6, { entropy: 0.001 })]);
    const alarms = (await events(account, job.id)).filter((e) => e.type === 'job.alarm');
    expect(alarms).toHaveLength(1);
    expect(alarms[0]!.data).toMatchObject({
      rule: 'entropy',
      metric: 'entropy',
      window: { from_step: 3, to_step: 5 },
      values: [0.009, 0.004, 0.002],
      threshold: 0.01,
      action: 'event',
    });
  });

  it('zero-signal groups, response-length blow-up, a KL spike and reward up / eval down each fire; a pause rule pauses', async () => {
    const { account, job, report } = await runningJob({
      hyperparameters: { prompts_per_step: 4 },
      alarms: {
        zero_signal: { window: 3, max_fraction: 0.75, action: 'pause' },
        response_length: { window: 4 },
      },
    });
    const lengths = [100, 150, 250, 400];
    const kls = [0.01, 0.012, 0.011, 0.5];
    const points = [0, 1, 2, 3].map((s) =>
      rlStep(s, {
        'groups/zero_signal': 4 - (s === 0 ? 1 : 0),
        'response_length/mean': lengths[s]!,
        kl: kls[s]!,
        'reward/mean': 0.2 + 0.2 * s,
        ...(s % 1 === 0 ? { 'eval/pass@1': 0.6 - 0.1 * s } : {}),
      }),
    );
    await report(points);
    const alarms = (await events(account, job.id)).filter((e) => e.type === 'job.alarm');
    const byRule = Object.fromEntries(alarms.map((a) => [a.data.rule, a.data]));
    expect(Object.keys(byRule).sort()).toEqual(['kl', 'response_length', 'reward_hacking', 'zero_signal']);
    expect(byRule.zero_signal).toMatchObject({ values: [1, 1, 1], action: 'pause' });
    expect(byRule.response_length).toMatchObject({ values: [100, 150, 250, 400], threshold: 3 });
    expect(byRule.kl).toMatchObject({ metric: 'kl', threshold: 10 });
    expect(byRule.reward_hacking).toMatchObject({ window: { from_step: 1, to_step: 3 } });
    const after = await expectJson<{ pause_requested: boolean }>(`/v1/jobs/${job.id}`, 200, {
      key: account.apiKey,
    });
    expect(after.pause_requested).toBe(true);
  });
});
