import { createExecutionContext, createScheduledController, waitOnExecutionContext } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import worker from '../src/index';
import { call, expectJson, type JobBody, lease, newAccount, newRunner, submitJob, testEnv } from './helpers';

type ErrorBody = { error: { code: string; message: string } };

async function runCron() {
  const ctx = createExecutionContext();
  await worker.scheduled(
    createScheduledController({ scheduledTime: Date.now(), cron: '* * * * *' }),
    testEnv,
    ctx,
  );
  await waitOnExecutionContext(ctx);
}

/** Moves a job's lease expiry into the past, as if its runner had stopped sending heartbeats. */
async function expireLease(jobId: string) {
  await testEnv.DB.prepare('UPDATE jobs SET lease_expires_at = ?1 WHERE id = ?2')
    .bind(Date.now() - 1000, jobId)
    .run();
}

describe('lease', () => {
  it('gives one job to exactly one of two concurrent runners, with the resolved spec and attempt 1', async () => {
    const account = await newAccount();
    const [r1, r2] = [await newRunner(account), await newRunner(account)];
    const job = await submitJob(account);
    const results = await Promise.all([lease(r1.token), lease(r2.token)]);
    const winners = results.filter((r) => r !== null);
    expect(winners).toHaveLength(1);
    const won = winners[0]!;
    expect(won.job_id).toBe(job.id);
    expect(won.attempt).toBe(1);
    expect(won.spec).toEqual(job.spec);
    expect(won.resume_from).toBeNull();
    expect(won.plugins.map((p) => p.ref)).toEqual([
      'builtin:math',
      'builtin:ground-truth',
      'builtin:expression',
    ]);
    const after = await expectJson<JobBody>(`/v1/jobs/${job.id}`, 200, { key: account.apiKey });
    expect(after.status).toBe('running');
  });

  it("only leases jobs whose labels and capabilities the runner has, and only its own account's", async () => {
    const account = await newAccount();
    const other = await newAccount();
    const plain = await newRunner(account);
    const gpu = await newRunner(account, ['gpu', 'a100'], ['llm.chat']);
    const foreign = await newRunner(other, ['gpu', 'a100'], ['llm.chat']);
    const job = await submitJob(account, {
      runner_labels: ['gpu'],
      critic: { plugin: 'builtin:llm', config: {}, grants: ['llm.chat'] },
    });
    expect(await lease(plain.token)).toBeNull();
    expect(await lease(gpu.token, { capabilities: [] })).toBeNull();
    expect(await lease(foreign.token)).toBeNull();
    expect((await lease(gpu.token))?.job_id).toBe(job.id);
  });

  it('long-polls until a job arrives', async () => {
    const account = await newAccount();
    const runner = await newRunner(account);
    const started = Date.now();
    const waiting = lease(runner.token, { wait_seconds: 5 });
    await new Promise((r) => setTimeout(r, 300));
    const job = await submitJob(account);
    const got = await waiting;
    expect(got?.job_id).toBe(job.id);
    // Answered when the job arrived, well before the 5 s wait ran out.
    expect(Date.now() - started).toBeLessThan(4500);
  });
});

describe('a leased job', () => {
  async function running() {
    const account = await newAccount();
    const runner = await newRunner(account);
    const job = await submitJob(account);
    const leased = (await lease(runner.token))!;
    const url = `/v1/runner/jobs/${job.id}`;
    return { account, runner, job, leased, url };
  }

  it('stores a metrics batch once however often it is sent, and large batches past the 100-parameter limit', async () => {
    const { account, runner, leased, url, job } = await running();
    const points = Array.from({ length: 250 }, (_, step) => ({
      step,
      values: {
        loss: 1 / (step + 1),
        'reward/mean': step / 250,
        'eval/accuracy': step % 50 === 0 ? 0.5 : null,
      },
    }));
    const body = { lease_id: leased.lease_id, attempt: 1, points };
    const first = await expectJson<{ accepted: number; duplicates: number }>(`${url}/metrics`, 200, {
      key: runner.token,
      json: body,
    });
    expect(first).toEqual({ accepted: 250, duplicates: 0 });
    const again = await expectJson<{ accepted: number; duplicates: number }>(`${url}/metrics`, 200, {
      key: runner.token,
      json: body,
    });
    expect(again).toEqual({ accepted: 0, duplicates: 250 });
    const rows = await testEnv.DB.prepare('SELECT COUNT(*) AS n FROM metric_points WHERE job_id = ?')
      .bind(job.id)
      .first<{ n: number }>();
    expect(rows?.n).toBe(250);

    const series = await expectJson<{
      data: { step: number; values: Record<string, number | null> }[];
      next_from_step: number | null;
    }>(`/v1/jobs/${job.id}/metrics?names=loss,eval/accuracy&from_step=200&limit=30`, 200, {
      key: account.apiKey,
    });
    expect(series.data).toHaveLength(30);
    expect(series.data[0]).toMatchObject({ step: 200, values: { loss: 1 / 201, 'eval/accuracy': 0.5 } });
    expect(Object.keys(series.data[1]!.values).sort()).toEqual(['eval/accuracy', 'loss']);
    expect(series.next_from_step).toBe(230);
    const jobNow = await expectJson<{ current_step: number }>(`/v1/jobs/${job.id}`, 200, {
      key: account.apiKey,
    });
    expect(jobNow.current_step).toBe(249);
  });

  it('rejects NaN-like metric values with the field path', async () => {
    const { runner, leased, url } = await running();
    const res = await expectJson<{ error: { fields: { path: string }[] } }>(`${url}/metrics`, 400, {
      key: runner.token,
      json: { lease_id: leased.lease_id, attempt: 1, points: [{ step: 0, values: { loss: 'NaN' } }] },
    });
    expect(res.error.fields.map((f) => f.path)).toEqual(['points.0.values.loss']);
  });

  it('stores events idempotently by (attempt, seq) next to the lifecycle events', async () => {
    const { account, runner, leased, url, job } = await running();
    const events = Array.from({ length: 40 }, (_, seq) => ({
      seq,
      type: 'job.log',
      data: { line: `step ${seq}` },
    }));
    const body = { lease_id: leased.lease_id, attempt: 1, events };
    expect(await expectJson(`${url}/events`, 200, { key: runner.token, json: body })).toEqual({
      accepted: 40,
      duplicates: 0,
    });
    expect(await expectJson(`${url}/events`, 200, { key: runner.token, json: body })).toEqual({
      accepted: 0,
      duplicates: 40,
    });
    const listed = await expectJson<{ data: { type: string; attempt: number }[] }>(
      `/v1/jobs/${job.id}/events?limit=1000`,
      200,
      {
        key: account.apiKey,
      },
    );
    expect(listed.data.map((e) => e.type)).toEqual([
      'job.queued',
      'job.started',
      ...events.map(() => 'job.log'),
    ]);
    const lifecycle = await expectJson<{ error: { fields: { path: string }[] } }>(`${url}/events`, 400, {
      key: runner.token,
      json: { lease_id: leased.lease_id, attempt: 1, events: [{ seq: 99, type: 'job.succeeded' }] },
    });
    expect(lifecycle.error.fields[0]?.path).toBe('events.0.type');
    const wrongAttempt = await expectJson<ErrorBody>(`${url}/events`, 409, {
      key: runner.token,
      json: { ...body, attempt: 2 },
    });
    expect(wrongAttempt.error.code).toBe('attempt_mismatch');
  });

  it('cancel while running: cancelling → heartbeat says cancel → ack → cancelled', async () => {
    const { account, runner, leased, url, job } = await running();
    const cancelling = await expectJson<JobBody>(`/v1/jobs/${job.id}/cancel`, 200, {
      key: account.apiKey,
      method: 'POST',
    });
    expect(cancelling.status).toBe('cancelling');
    const beat = await expectJson<{ cancel_requested: boolean; pause_requested: boolean }>(
      `${url}/heartbeat`,
      200,
      {
        key: runner.token,
        json: { lease_id: leased.lease_id, step: 3 },
      },
    );
    expect(beat).toMatchObject({ cancel_requested: true, pause_requested: false });
    const acked = await expectJson<{ status: string }>(`${url}/ack`, 200, {
      key: runner.token,
      json: { lease_id: leased.lease_id, action: 'cancelled' },
    });
    expect(acked.status).toBe('cancelled');
    const lost = await expectJson<ErrorBody>(`${url}/heartbeat`, 409, {
      key: runner.token,
      json: { lease_id: leased.lease_id },
    });
    expect(lost.error.code).toBe('lease_lost');
    const events = await expectJson<{ data: { type: string }[] }>(`/v1/jobs/${job.id}/events`, 200, {
      key: account.apiKey,
    });
    expect(events.data.map((e) => e.type)).toEqual([
      'job.queued',
      'job.started',
      'job.cancel_requested',
      'job.cancelled',
    ]);
  });

  it('pause while running: the runner checkpoints and acks, resume requeues, the next lease resumes from the checkpoint', async () => {
    const { account, runner, leased, url, job } = await running();
    const paused = await expectJson<JobBody>(`/v1/jobs/${job.id}/pause`, 200, {
      key: account.apiKey,
      method: 'POST',
    });
    expect(paused).toMatchObject({ status: 'running', pause_requested: true });
    const beat = await expectJson<{ pause_requested: boolean }>(`${url}/heartbeat`, 200, {
      key: runner.token,
      json: { lease_id: leased.lease_id },
    });
    expect(beat.pause_requested).toBe(true);

    // A two-part checkpoint, the first part at R2's 5 MiB minimum.
    const init = await expectJson<{ checkpoint_id: string; part_url: string }>(`${url}/checkpoints`, 201, {
      key: runner.token,
      json: { lease_id: leased.lease_id, step: 7 },
    });
    const part1 = new Uint8Array(5 * 1024 * 1024).fill(1);
    const part2 = new TextEncoder().encode('tail');
    const parts = [];
    for (const [n, bytes] of [
      [1, part1],
      [2, part2],
    ] as const) {
      parts.push(
        await expectJson<{ part_number: number; etag: string }>(
          init.part_url.replace('{part_number}', String(n)),
          200,
          {
            key: runner.token,
            method: 'PUT',
            body: bytes,
            headers: { 'x-lease-id': leased.lease_id, 'content-length': String(bytes.byteLength) },
          },
        ),
      );
    }
    const whole = new Uint8Array(part1.byteLength + part2.byteLength);
    whole.set(part1);
    whole.set(part2, part1.byteLength);
    const sha256 = [...new Uint8Array(await crypto.subtle.digest('SHA-256', whole))]
      .map((b) => b.toString(16).padStart(2, '0'))
      .join('');
    const ckpt = await expectJson<{ id: string; status: string; size: number }>(
      `${url}/checkpoints/${init.checkpoint_id}/complete`,
      200,
      { key: runner.token, json: { lease_id: leased.lease_id, parts, sha256, size: whole.byteLength } },
    );
    expect(ckpt).toMatchObject({ status: 'complete', size: whole.byteLength });

    expect(
      (
        await expectJson<{ status: string }>(`${url}/ack`, 200, {
          key: runner.token,
          json: { lease_id: leased.lease_id, action: 'paused' },
        })
      ).status,
    ).toBe('paused');
    expect(await lease(runner.token)).toBeNull();
    await expectJson(`/v1/jobs/${job.id}/resume`, 200, { key: account.apiKey, method: 'POST' });
    const next = (await lease(runner.token))!;
    expect(next.attempt).toBe(2);
    expect(next.resume_from).toMatchObject({ id: init.checkpoint_id, step: 7 });

    const listed = await expectJson<{ data: { id: string }[] }>(`/v1/jobs/${job.id}/checkpoints`, 200, {
      key: account.apiKey,
    });
    expect(listed.data.map((c) => c.id)).toEqual([init.checkpoint_id]);
    const download = await call(`/v1/jobs/${job.id}/checkpoints/${init.checkpoint_id}/content`, {
      key: account.apiKey,
    });
    expect(download.status).toBe(200);
    expect(download.headers.get('x-sha256')).toBe(sha256);
    expect((await download.arrayBuffer()).byteLength).toBe(whole.byteLength);
  });

  it('keeps one checkpoint per (job, step): a second upload of a stored step answers with the first', async () => {
    const { account, runner, leased, url, job } = await running();
    const upload = async (text: string) => {
      const init = await expectJson<{ checkpoint_id: string; part_url: string }>(`${url}/checkpoints`, 201, {
        key: runner.token,
        json: { lease_id: leased.lease_id, step: 4 },
      });
      const bytes = new TextEncoder().encode(text);
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
      return expectJson<{ id: string; step: number }>(
        `${url}/checkpoints/${init.checkpoint_id}/complete`,
        200,
        {
          key: runner.token,
          json: { lease_id: leased.lease_id, parts: [part], sha256: 'a'.repeat(64), size: bytes.byteLength },
        },
      );
    };
    const first = await upload('weights at step 4');
    const second = await upload('weights at step 4');
    expect(second.id).toBe(first.id);
    const listed = await expectJson<{ data: { id: string; step: number }[] }>(
      `/v1/jobs/${job.id}/checkpoints`,
      200,
      {
        key: account.apiKey,
      },
    );
    expect(listed.data.map((c) => c.id)).toEqual([first.id]);
    const events = await expectJson<{ data: { type: string }[] }>(`/v1/jobs/${job.id}/events`, 200, {
      key: account.apiKey,
    });
    expect(events.data.filter((e) => e.type === 'job.checkpoint')).toHaveLength(1);
  });

  it('completes, recording the final checkpoint and the summary', async () => {
    const { account, runner, leased, url, job } = await running();
    const done = await expectJson<{ status: string }>(`${url}/complete`, 200, {
      key: runner.token,
      json: { lease_id: leased.lease_id, summary: { final_accuracy: 0.4 } },
    });
    expect(done.status).toBe('succeeded');
    const events = await expectJson<{ data: { type: string; data: Record<string, unknown> }[] }>(
      `/v1/jobs/${job.id}/events`,
      200,
      {
        key: account.apiKey,
      },
    );
    expect(events.data.at(-1)).toMatchObject({
      type: 'job.succeeded',
      data: { summary: { final_accuracy: 0.4 } },
    });
    await expectJson(`${url}/complete`, 409, { key: runner.token, json: { lease_id: leased.lease_id } });
  });

  it('fail: retryable → requeued (attempt 2 on the next lease); not retryable → failed with the reason', async () => {
    const { account, runner, leased, url, job } = await running();
    const requeued = await expectJson<{ status: string }>(`${url}/fail`, 200, {
      key: runner.token,
      json: {
        lease_id: leased.lease_id,
        error: { code: 'runner_shutdown', message: 'SIGTERM' },
        retryable: true,
      },
    });
    expect(requeued.status).toBe('queued');
    const second = (await lease(runner.token))!;
    expect(second.attempt).toBe(2);
    const failed = await expectJson<{ status: string }>(`/v1/runner/jobs/${job.id}/fail`, 200, {
      key: runner.token,
      json: { lease_id: second.lease_id, error: { code: 'plugin_error', message: 'verifier crashed' } },
    });
    expect(failed.status).toBe('failed');
    const final = await expectJson<JobBody>(`/v1/jobs/${job.id}`, 200, { key: account.apiKey });
    expect(final.error).toEqual({ code: 'plugin_error', message: 'verifier crashed' });
  });

  it('a job with a pending cancel never completes as succeeded: complete ends it cancelled', async () => {
    const { account, runner, leased, url, job } = await running();
    await expectJson(`/v1/jobs/${job.id}/cancel`, 200, { key: account.apiKey, method: 'POST' });
    // the runner finished its last step before it heard of the request
    const done = await expectJson<{ status: string }>(`${url}/complete`, 200, {
      key: runner.token,
      json: { lease_id: leased.lease_id, summary: {} },
    });
    expect(done.status).toBe('cancelled');
    const after = await expectJson<JobBody>(`/v1/jobs/${job.id}`, 200, { key: account.apiKey });
    expect(after.status).toBe('cancelled');
    const events = await expectJson<{ data: { type: string }[] }>(`/v1/jobs/${job.id}/events`, 200, {
      key: account.apiKey,
    });
    expect(events.data.map((e) => e.type)).not.toContain('job.succeeded');
  });

  it('a job with a pending pause never completes as succeeded: complete ends it paused, and resume works', async () => {
    const { account, runner, leased, url, job } = await running();
    await expectJson(`/v1/jobs/${job.id}/pause`, 200, { key: account.apiKey, method: 'POST' });
    const done = await expectJson<{ status: string }>(`${url}/complete`, 200, {
      key: runner.token,
      json: { lease_id: leased.lease_id, summary: {} },
    });
    expect(done.status).toBe('paused');
    const resumed = await expectJson<JobBody>(`/v1/jobs/${job.id}/resume`, 200, {
      key: account.apiKey,
      method: 'POST',
    });
    expect(resumed.status).toBe('queued');
    const next = (await lease(runner.token))!;
    expect(next.attempt).toBe(2);
    const finished = await expectJson<{ status: string }>(`/v1/runner/jobs/${job.id}/complete`, 200, {
      key: runner.token,
      json: { lease_id: next.lease_id, summary: {} },
    });
    expect(finished.status).toBe('succeeded');
  });

  it('stores step events once per (job, step, type) across attempts', async () => {
    const { account, runner, leased, url, job } = await running();
    const stepEvents = (attempt: number, steps: number[], from: number) =>
      steps.flatMap((step, i) => [
        { seq: from + 2 * i, type: 'job.progress', data: { step, loss: attempt } },
        { seq: from + 2 * i + 1, type: 'job.evaluated', data: { step, 'eval/pass@1': attempt } },
      ]);
    await expectJson(`${url}/events`, 200, {
      key: runner.token,
      json: {
        lease_id: leased.lease_id,
        attempt: 1,
        events: [
          { seq: 0, type: 'job.progress', data: { phase: 'started', step: 0 } },
          ...stepEvents(1, [1, 2, 3], 1),
        ],
      },
    });
    // the runner dies after the events of step 3 arrived but before its metric point did
    await expectJson(`${url}/fail`, 200, {
      key: runner.token,
      json: { lease_id: leased.lease_id, error: { code: 'runner_shutdown', message: 'x' }, retryable: true },
    });
    const second = (await lease(runner.token))!;
    expect(second.attempt).toBe(2);
    const res = await expectJson<{ accepted: number; duplicates: number }>(`${url}/events`, 200, {
      key: runner.token,
      json: {
        lease_id: second.lease_id,
        attempt: 2,
        events: [
          { seq: 0, type: 'job.progress', data: { phase: 'started', step: 2 } },
          ...stepEvents(2, [3, 4], 1),
        ],
      },
    });
    expect(res).toEqual({ accepted: 3, duplicates: 2 });
    const listed = await expectJson<{
      data: { type: string; attempt: number; data: { step?: number; phase?: string } }[];
    }>(`/v1/jobs/${job.id}/events?limit=1000`, 200, { key: account.apiKey });
    const steps = listed.data
      .filter((e) => (e.type === 'job.progress' || e.type === 'job.evaluated') && !e.data.phase)
      .map((e) => `${e.type}@${e.data.step}#${e.attempt}`);
    expect(steps.sort()).toEqual(
      [1, 2, 3, 4]
        .flatMap((s) => [`job.progress@${s}#${s === 4 ? 2 : 1}`, `job.evaluated@${s}#${s === 4 ? 2 : 1}`])
        .sort(),
    );
  });

  it('stores rollouts per step and filters them by reward', async () => {
    const { account, runner, leased, url, job } = await running();
    const records = [
      { step: 0, prompt_index: 0, kind: 'initial', reward: 0, response: 'x = 3' },
      { step: 0, prompt_index: 0, kind: 'initial', reward: 1, response: 'x = 4' },
      { step: 0, prompt_index: 0, kind: 'refinement', reward: 1, response: 'x = 4, fixed' },
    ];
    const jsonl = `${records.map((r) => JSON.stringify(r)).join('\n')}\n`;
    const gz = new Uint8Array(
      await new Response(new Blob([jsonl]).stream().pipeThrough(new CompressionStream('gzip'))).arrayBuffer(),
    );
    await expectJson(`${url}/rollouts/0`, 200, {
      key: runner.token,
      method: 'PUT',
      body: gz,
      headers: { 'x-lease-id': leased.lease_id, 'content-length': String(gz.byteLength) },
    });
    const steps = await expectJson<{ steps: { step: number }[] }>(`/v1/jobs/${job.id}/rollouts`, 200, {
      key: account.apiKey,
    });
    expect(steps.steps.map((s) => s.step)).toEqual([0]);
    const good = await expectJson<{ data: { response: string }[] }>(
      `/v1/jobs/${job.id}/rollouts?step=0&min_reward=1`,
      200,
      {
        key: account.apiKey,
      },
    );
    expect(good.data.map((r) => r.response)).toEqual(['x = 4', 'x = 4, fixed']);
    const refinements = await expectJson<{ data: unknown[] }>(
      `/v1/jobs/${job.id}/rollouts?step=0&kind=refinement&limit=5`,
      200,
      {
        key: account.apiKey,
      },
    );
    expect(refinements.data).toHaveLength(1);
  });
});

describe('lease expiry (cron)', () => {
  it('requeues an expired lease as attempt 2, then fails the job with a reason once retries run out', async () => {
    const account = await newAccount();
    const runner = await newRunner(account);
    const job = await submitJob(account);
    const first = (await lease(runner.token))!;
    expect(first.attempt).toBe(1);
    await expireLease(job.id);
    await runCron();
    const requeued = await expectJson<JobBody>(`/v1/jobs/${job.id}`, 200, { key: account.apiKey });
    expect(requeued).toMatchObject({ status: 'queued', retries: 1 });
    // The runner that lost the lease is told so.
    const lost = await expectJson<ErrorBody>(`/v1/runner/jobs/${job.id}/heartbeat`, 409, {
      key: runner.token,
      json: { lease_id: first.lease_id },
    });
    expect(lost.error.code).toBe('lease_lost');
    // A late batch from the runner that lost the lease is refused and writes nothing.
    const late = await expectJson<ErrorBody>(`/v1/runner/jobs/${job.id}/metrics`, 409, {
      key: runner.token,
      json: { lease_id: first.lease_id, attempt: 1, points: [{ step: 0, values: { loss: 1 } }] },
    });
    expect(late.error.code).toBe('lease_lost');
    const stored = await testEnv.DB.prepare('SELECT COUNT(*) AS n FROM metric_points WHERE job_id = ?')
      .bind(job.id)
      .first<{ n: number }>();
    expect(stored?.n).toBe(0);
    const second = (await lease(runner.token))!;
    expect(second.attempt).toBe(2);

    // Default bound: 3 retries. Attempts 2, 3, 4 expire too; the fourth expiry fails the job.
    for (let attempt = 2; attempt <= 4; attempt++) {
      await expireLease(job.id);
      await runCron();
      if (attempt < 4) expect((await lease(runner.token))?.attempt).toBe(attempt + 1);
    }
    const failed = await expectJson<JobBody>(`/v1/jobs/${job.id}`, 200, { key: account.apiKey });
    expect(failed.status).toBe('failed');
    expect(failed.error?.code).toBe('lease_expired');
    expect(failed.error?.message).toContain('lease expired 4 times');
    const types = (
      await expectJson<{ data: { type: string }[] }>(`/v1/jobs/${job.id}/events?limit=100`, 200, {
        key: account.apiKey,
      })
    ).data.map((e) => e.type);
    expect(types.filter((t) => t === 'job.lease_expired')).toHaveLength(4);
    expect(types.at(-1)).toBe('job.failed');
  });

  it('a job being cancelled whose runner vanished is cancelled', async () => {
    const account = await newAccount();
    const runner = await newRunner(account);
    const job = await submitJob(account);
    await lease(runner.token);
    await expectJson(`/v1/jobs/${job.id}/cancel`, 200, { key: account.apiKey, method: 'POST' });
    await expireLease(job.id);
    await runCron();
    expect((await expectJson<JobBody>(`/v1/jobs/${job.id}`, 200, { key: account.apiKey })).status).toBe(
      'cancelled',
    );
  });
});
