// The richer job webhooks end to end in workerd: `checkpoint.created` with a download link,
// `job.metrics_digest` every N steps, and `job.budget_reached` / `job.alarm`, each produced by the
// real runner routes, fanned out by the real engine and Queue consumer, and received on 127.0.0.1
// by webhooks.receiver.ts, which verifies every signature with the `standardwebhooks` library.
import { describe, expect, inject, it } from 'vitest';
import { metricsDigest, windowEndsIn } from '../src/webhooks/digest';
import { call, expectJson, lease, newAccount, newRunner, submitJob, type TestAccount } from './helpers';

const receiver = `http://127.0.0.1:${inject('webhookReceiverPort')}`;

interface Received {
  headers: Record<string, string>;
  body: string;
  verification: (string | null)[];
}
interface Delivered {
  type: string;
  data: Record<string, unknown> & { job: { id: string }; sequence: number | null };
}

async function received(name: string): Promise<Received[]> {
  return (await fetch(`${receiver}/control/${name}/log`)).json();
}

/** Waits until `count` deliveries arrived, then a little longer so that a surplus one would show. */
async function settled(name: string, count: number): Promise<Received[]> {
  const start = Date.now();
  while ((await received(name)).length < count) {
    if (Date.now() - start > 30_000) throw new Error(`timed out waiting for ${count} deliveries to ${name}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 1500));
  return received(name);
}

let hooks = 0;
/** An endpoint of `account` on the loopback receiver, whose log the test reads. */
async function endpoint(account: TestAccount, eventTypes: string[]) {
  const name = `rich-${Date.now().toString(36)}-${hooks++}`;
  const ep = await expectJson<{ id: string; secret: string }>('/v1/webhooks/endpoints', 201, {
    key: account.apiKey,
    json: { url: `${receiver}/hook/${name}`, event_types: eventTypes },
  });
  await fetch(`${receiver}/control/${name}`, {
    method: 'POST',
    body: JSON.stringify({ secrets: [ep.secret] }),
  });
  return name;
}

async function runningJob(spec: Record<string, unknown> = {}, eventTypes: string[] = ['job.*']) {
  const account = await newAccount('whrich');
  const hook = await endpoint(account, eventTypes);
  const runner = await newRunner(account);
  const job = await submitJob(account, spec);
  const leased = (await lease(runner.token))!;
  expect(leased.job_id).toBe(job.id);
  const url = `/v1/runner/jobs/${job.id}`;
  const report = (points: { step: number; values: Record<string, number> }[]) =>
    expectJson(`${url}/metrics`, 200, {
      key: runner.token,
      json: { lease_id: leased.lease_id, attempt: 1, points },
    });
  return { account, hook, runner, job, leased, url, report };
}

const bodies = (log: Received[]) => log.map((r) => JSON.parse(r.body) as Delivered);

describe('checkpoint.created', { timeout: 60_000 }, () => {
  it('one signed delivery per stored checkpoint, whose download_url serves the same bytes to an API key', async () => {
    const { account, hook, runner, job, leased, url } = await runningJob({}, ['checkpoint.created']);
    const bytes = new TextEncoder().encode(`adapter weights of ${job.id}`);
    const sha256 = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))]
      .map((b) => b.toString(16).padStart(2, '0'))
      .join('');
    const upload = async () => {
      const init = await expectJson<{ checkpoint_id: string; part_url: string }>(`${url}/checkpoints`, 201, {
        key: runner.token,
        json: { lease_id: leased.lease_id, step: 3 },
      });
      const part = await expectJson<{ part_number: number; etag: string }>(
        init.part_url.replace('{part_number}', '1'),
        200,
        {
          key: runner.token,
          method: 'PUT',
          body: bytes,
          headers: { 'x-lease-id': leased.lease_id, 'content-length': String(bytes.byteLength) },
        },
      );
      return expectJson<{ id: string }>(`${url}/checkpoints/${init.checkpoint_id}/complete`, 200, {
        key: runner.token,
        json: { lease_id: leased.lease_id, parts: [part], sha256, size: bytes.byteLength },
      });
    };
    const stored = await upload();
    // The same step uploaded again (a runner retrying) keeps the first checkpoint and sends nothing.
    expect((await upload()).id).toBe(stored.id);

    const log = await settled(hook, 1);
    expect(log).toHaveLength(1);
    expect(log[0]!.verification).toEqual([null]);
    const [delivered] = bodies(log);
    expect(delivered!.type).toBe('checkpoint.created');
    const link = `http://api.test/v1/jobs/${job.id}/checkpoints/${stored.id}/content`;
    expect(delivered!.data).toMatchObject({
      checkpoint_id: stored.id,
      step: 3,
      final: false,
      size: bytes.byteLength,
      sha256,
      download_url: link,
      job: { id: job.id, status: 'running' },
    });
    // Its sequence is that of the job.checkpoint event it accompanies.
    const events = await expectJson<{ data: { id: number; type: string }[] }>(
      `/v1/jobs/${job.id}/events`,
      200,
      {
        key: account.apiKey,
      },
    );
    expect(delivered!.data.sequence).toBe(events.data.find((e) => e.type === 'job.checkpoint')!.id);

    const download = await call(new URL(link).pathname, { key: account.apiKey });
    expect(download.status).toBe(200);
    expect(new Uint8Array(await download.arrayBuffer())).toEqual(bytes);
    expect((await call(new URL(link).pathname)).status).toBe(401);
  });

  it('is not part of job.*, and a job’s own webhook gets it only when named', async () => {
    const account = await newAccount('whrich');
    const job = await submitJob(account, { webhook: { url: `${receiver}/hook/unused` } });
    const events = (job.spec.webhook as { events: string[] }).events;
    expect(events).toContain('job.metrics_digest');
    expect(events).toContain('job.alarm');
    expect(events).not.toContain('checkpoint.created');
    const named = await submitJob(account, {
      webhook: { url: `${receiver}/hook/unused`, events: ['checkpoint.created', 'job.metrics_digest'] },
    });
    expect((named.spec.webhook as { events: string[] }).events).toEqual([
      'checkpoint.created',
      'job.metrics_digest',
    ]);
  });
});

describe('job.metrics_digest', { timeout: 60_000 }, () => {
  // reward/mean = step/100 and loss = 1 - step/100: the mean of steps 1..10 is 0.055, of 11..20 0.155.
  const point = (step: number) => ({
    step,
    values: { 'reward/mean': step / 100, loss: 1 - step / 100, 'groups/zero_signal': step % 2 },
  });
  const steps = (from: number, to: number) =>
    Array.from({ length: to - from + 1 }, (_, i) => point(from + i));

  it('steps 1..25 every 10 steps: exactly two digests with the window means, though every batch is posted twice', async () => {
    const { hook, job, report } = await runningJob({ metrics_digest: { every_steps: 10 } }, [
      'job.metrics_digest',
    ]);
    for (const batch of [steps(1, 7), steps(8, 14), steps(15, 20), steps(21, 25)]) {
      await report(batch);
      await report(batch); // the runner's retry after a lost answer
    }
    const log = await settled(hook, 2);
    expect(log).toHaveLength(2);
    expect(log.every((r) => r.verification[0] === null)).toBe(true);
    expect(new Set(log.map((r) => r.headers['webhook-id'])).size).toBe(2);
    const digests = bodies(log);
    expect(digests.map((d) => d.type)).toEqual(['job.metrics_digest', 'job.metrics_digest']);
    expect(digests.map((d) => d.data.window)).toEqual([
      { from_step: 1, to_step: 10, steps_reported: 10 },
      { from_step: 11, to_step: 20, steps_reported: 10 },
    ]);
    const [first, second] = digests.map((d) => d.data.metrics as Record<string, Record<string, number>>);
    expect(first!['reward/mean']).toEqual({ latest: 0.1, min: 0.01, max: 0.1, mean: 0.055, count: 10 });
    expect(second!['reward/mean']).toEqual({ latest: 0.2, min: 0.11, max: 0.2, mean: 0.155, count: 10 });
    expect(second!.loss).toEqual({ latest: 0.8, min: 0.8, max: 0.89, mean: 0.845, count: 10 });
    expect(second!['groups/zero_signal']).toMatchObject({ min: 0, max: 1, mean: 0.5 });
    expect(digests[0]!.data).toMatchObject({ every_steps: 10, job: { id: job.id }, sequence: null });
  });

  it('every_steps: 0 sends none; without the field a digest comes every 10 steps; a bad value is refused', async () => {
    const off = await runningJob({ metrics_digest: { every_steps: 0 } }, ['job.metrics_digest']);
    await off.report(steps(1, 12));
    const byDefault = await runningJob({}, ['job.metrics_digest']);
    await byDefault.report(steps(1, 12));
    const log = await settled(byDefault.hook, 1);
    expect(bodies(log).map((d) => d.data.window)).toEqual([
      { from_step: 1, to_step: 10, steps_reported: 10 },
    ]);
    expect(await received(off.hook)).toHaveLength(0);

    const refused = await expectJson<{
      error: { code: string; fields: { path: string; message: string }[] };
    }>('/v1/jobs', 400, {
      key: off.account.apiKey,
      json: {
        model: { id: 'Qwen/Qwen3-0.6B' },
        datasets: { train: { uri: 'https://example.test/train.jsonl' } },
        metrics_digest: { every_steps: -1 },
      },
    });
    expect(refused.error.fields).toContainEqual({
      path: 'metrics_digest.every_steps',
      message: 'must be >= 0, got -1',
    });
  });

  it('the pure digest: windows, latest/min/max/mean, a step stored by two attempts counts once', () => {
    expect(windowEndsIn(1, 25, 10)).toEqual([10, 20]);
    expect(windowEndsIn(8, 14, 10)).toEqual([10]);
    expect(windowEndsIn(11, 19, 10)).toEqual([]);
    expect(windowEndsIn(0, 30, 0)).toEqual([]);
    expect(windowEndsIn(0, 5, 5)).toEqual([5]);
    const digest = metricsDigest(
      [
        { attempt: 1, step: 4, values: { 'reward/mean': 0.2 } },
        { attempt: 1, step: 5, values: { 'reward/mean': 0.9, 'eval/pass@1': 0.5 } },
        { attempt: 1, step: 6, values: { 'reward/mean': 0.4 } },
        // the job resumed from step 5 and redid step 6: the second attempt's value counts
        { attempt: 2, step: 6, values: { 'reward/mean': 0.6, loss: null } },
        { attempt: 1, step: 7, values: { 'reward/mean': 1 } }, // outside the window
      ],
      6,
      3,
    );
    expect(digest).toEqual({
      every_steps: 3,
      window: { from_step: 4, to_step: 6, steps_reported: 3 },
      metrics: {
        // (0.2 + 0.9 + 0.6) / 3
        'reward/mean': { latest: 0.6, min: 0.2, max: 0.9, mean: 0.566667, count: 3 },
        'eval/pass@1': { latest: 0.5, min: 0.5, max: 0.5, mean: 0.5, count: 1 },
      },
    });
  });
});

describe('budgets and alarms as webhooks', { timeout: 60_000 }, () => {
  it('job.budget_reached and job.alarm from reported metrics are delivered, once each', async () => {
    const { hook, job, report } = await runningJob(
      {
        budgets: { max_generated_tokens: 2500 },
        hyperparameters: { prompts_per_step: 4 },
        metrics_digest: { every_steps: 0 },
      },
      ['job.budget_reached', 'job.alarm'],
    );
    const step = (n: number, entropy: number) => ({
      step: n,
      values: { 'tokens/generated': 1000, 'tokens/trained': 800, entropy, 'reward/mean': 0.5 },
    });
    await report([step(0, 0.9), step(1, 0.009), step(2, 0.004)]);
    await report([step(3, 0.002)]);
    await report([step(4, 0.001)]);
    const log = await settled(hook, 2);
    expect(log).toHaveLength(2);
    expect(log.every((r) => r.verification[0] === null)).toBe(true);
    const byType = Object.fromEntries(bodies(log).map((d) => [d.type, d.data]));
    expect(byType['job.budget_reached']).toMatchObject({
      budget: 'generated_tokens',
      limit: 2500,
      used: 3000,
      action: 'pause',
      job: { id: job.id },
    });
    expect(byType['job.alarm']).toMatchObject({
      rule: 'entropy',
      window: { from_step: 1, to_step: 3 },
      values: [0.009, 0.004, 0.002],
      job: { id: job.id },
    });
  });
});
