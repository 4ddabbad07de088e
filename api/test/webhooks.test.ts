// Webhooks end to end in workerd: real routes, real local D1, the real Queue consumer (retries
// 1 s apart via WEBHOOKS_RETRY_SCHEDULE in vitest.config.ts) and real HTTP to a receiver on
// 127.0.0.1 (webhooks.receiver.ts) that verifies every delivery with the `standardwebhooks` library.
// Job events are written through recordJobEvent, the one function the job lifecycle uses.
import { applyD1Migrations, env, SELF } from 'cloudflare:test';
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/d1';
import { Webhook } from 'standardwebhooks';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { verifyWebhook } from '../../client/src/webhooks';
import * as schema from '../src/db/schema';
import { webhookDeliveries, webhookEndpoints, webhookEvents } from '../src/db/webhooks-schema';
import { recordJobEvent } from '../src/events';
import { processDelivery, sweepWebhookDeliveries, webhookSettings } from '../src/webhooks/engine';
import { jobWebhookUrlProblem } from '../src/webhooks/job-events';
import { expectJson, lease, newAccount, newRunner, submitJob } from './helpers';

const receiver = `http://127.0.0.1:${inject('webhookReceiverPort')}`;
const testEnv = env as unknown as {
  DB: D1Database;
  JOBS_QUEUE: Queue;
  TEST_MIGRATIONS: Parameters<typeof applyD1Migrations>[1];
};
const db = drizzle(testEnv.DB, { schema });

interface Received {
  at: number;
  headers: Record<string, string>;
  body: string;
  verification: (string | null)[];
}

beforeAll(async () => {
  await applyD1Migrations(testEnv.DB, testEnv.TEST_MIGRATIONS);
});

async function control(name: string, config: object) {
  await fetch(`${receiver}/control/${name}`, { method: 'POST', body: JSON.stringify(config) });
}
async function received(name: string): Promise<Received[]> {
  return (await fetch(`${receiver}/control/${name}/log`)).json();
}
async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let accounts = 0;
/** A fresh account (isolation between tests) and a client for its API key. */
async function account() {
  const res = await SELF.fetch('http://api.test/v1/bootstrap', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ handle: `wh-${Date.now().toString(36)}-${accounts++}` }),
  });
  expect(res.status).toBe(201);
  const { api_key, account } = (await res.json()) as { api_key: string; account: { id: string } };
  const call = async (method: string, path: string, body?: unknown) => {
    const r = await SELF.fetch(`http://api.test/v1/webhooks${path}`, {
      method,
      headers: { authorization: `Bearer ${api_key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    // biome-ignore lint/suspicious/noExplicitAny: test responses are read field by field
    return { status: r.status, body: (text ? JSON.parse(text) : null) as any };
  };
  return { accountId: account.id, call };
}

type Account = Awaited<ReturnType<typeof account>>;

async function endpoint(acct: Account, name: string, extra: object = {}) {
  const res = await acct.call('POST', '/endpoints', { url: `${receiver}/hook/${name}`, ...extra });
  expect(res.status).toBe(201);
  await control(name, { secrets: [res.body.secret] });
  return res.body as { id: string; secret: string };
}

let jobs = 0;
async function job(accountId: string, spec: object = {}) {
  const id = `job_wh${Date.now().toString(36)}${jobs++}`;
  const now = Date.now();
  await db.insert(schema.jobs).values({
    id,
    accountId,
    name: `webhook-test-${jobs}`,
    status: 'queued',
    algorithm: 'critique-grpo',
    spec: JSON.stringify({ name: `webhook-test-${jobs}`, metadata: { team: 'math' }, ...spec }),
    totalSteps: 100,
    createdAt: now,
    updatedAt: now,
  });
  return {
    id,
    /** Moves the job to `status` and writes the event, as the lifecycle code does. */
    async event(type: string, status: string, data: Record<string, unknown> = {}) {
      await db.update(schema.jobs).set({ status, updatedAt: Date.now() }).where(eq(schema.jobs.id, id));
      // biome-ignore lint/suspicious/noExplicitAny: the event type union is the contract's; tests pass strings
      await recordJobEvent(db, env as any, { id, accountId, attempt: 1 }, type as any, data);
    },
  };
}

async function deliveriesOf(acct: Account, endpointId: string) {
  const res = await acct.call('GET', `/endpoints/${endpointId}/deliveries?limit=100`);
  expect(res.status).toBe(200);
  return res.body.data as {
    id: string;
    status: string;
    event_id: string;
    event_type: string;
    attempts: number;
    attempt_log: {
      attempt: number;
      response_status: number | null;
      response_body: string;
      latency_ms: number;
      error: string | null;
    }[];
  }[];
}

describe('endpoints', () => {
  it('create shows the secret once; list/get/patch/delete; validation and SSRF errors name the field', async () => {
    const a = await account();
    const created = await a.call('POST', '/endpoints', {
      url: `${receiver}/hook/crud`,
      description: 'ci',
      event_types: ['job.succeeded', 'job.failed'],
    });
    expect(created.status).toBe(201);
    expect(created.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(created.body).toMatchObject({
      enabled: true,
      event_types: ['job.succeeded', 'job.failed'],
      job_id: null,
    });
    const got = await a.call('GET', `/endpoints/${created.body.id}`);
    expect(got.body.secret).toBeUndefined();
    expect((await a.call('GET', '/endpoints')).body.data.map((e: { id: string }) => e.id)).toEqual([
      created.body.id,
    ]);
    const patched = await a.call('PATCH', `/endpoints/${created.body.id}`, {
      enabled: false,
      event_types: ['job.*'],
    });
    expect(patched.body).toMatchObject({ enabled: false, disabled_reason: 'manual', event_types: ['job.*'] });

    const badType = await a.call('POST', '/endpoints', {
      url: `${receiver}/hook/x`,
      event_types: ['job.finished'],
    });
    expect(badType.status).toBe(400);
    expect(badType.body.error.fields[0].path).toBe('event_types.0');
    const typo = await a.call('POST', '/endpoints', { url: `${receiver}/hook/x`, event_type: ['job.*'] });
    expect(typo.body.error.fields.map((f: { path: string }) => f.path)).toContain('event_type');
    for (const url of [
      'http://10.0.0.7/hook',
      'http://169.254.169.254/latest',
      'http://hooks.example.com/x',
    ]) {
      const refused = await a.call('POST', '/endpoints', { url });
      expect([url, refused.status, refused.body.error.code]).toEqual([url, 400, 'webhook_url_forbidden']);
      expect(refused.body.error.fields).toEqual([{ path: 'url', message: expect.any(String) }]);
    }

    const other = await account();
    expect((await other.call('GET', `/endpoints/${created.body.id}`)).status).toBe(404);
    expect((await other.call('DELETE', `/endpoints/${created.body.id}`)).status).toBe(404);
    expect((await a.call('DELETE', `/endpoints/${created.body.id}`)).status).toBe(204);
    expect((await a.call('GET', `/endpoints/${created.body.id}`)).status).toBe(404);
  });
});

describe('delivery', { timeout: 60_000 }, () => {
  it.concurrent('delivers every event of a job’s life, in order, each verified by the standardwebhooks library', async () => {
    const a = await account();
    const all = await endpoint(a, 'life');
    const onlyEnd = await endpoint(a, 'life-end', {
      event_types: ['job.succeeded', 'job.failed', 'job.cancelled'],
    });
    const j = await job(a.accountId);
    await j.event('job.queued', 'queued');
    await j.event('job.started', 'running', { runner_id: 'run_1' });
    await j.event('job.progress', 'running', { step: 1 }); // not a webhook event type
    await j.event('job.checkpoint', 'running', { checkpoint_id: 'ckpt_1', step: 50 });
    await j.event('job.evaluated', 'running', { step: 50, metrics: { 'eval/accuracy': 0.5 } });
    await j.event('job.succeeded', 'succeeded');
    const failing = await job(a.accountId);
    await failing.event('job.queued', 'queued');
    await failing.event('job.failed', 'failed', { error: { code: 'oom', message: 'out of memory' } });
    const cancelled = await job(a.accountId);
    await cancelled.event('job.cancelled', 'cancelled', { reason: 'user' });

    const got = await waitFor('8 deliveries', async () => {
      const log = await received('life');
      return log.length >= 8 && log;
    });
    const bodies = got.map(
      (r) =>
        JSON.parse(r.body) as {
          type: string;
          data: { job: { id: string; status: string }; sequence: unknown };
        },
    );
    const ofJob = (id: string) =>
      bodies.filter((b) => b.data.job.id === id).map((b) => `${b.type}:${b.data.job.status}`);
    expect(ofJob(j.id)).toEqual([
      'job.queued:queued',
      'job.started:running',
      'job.checkpoint:running',
      'job.evaluated:running',
      'job.succeeded:succeeded',
    ]);
    expect(ofJob(failing.id)).toEqual(['job.queued:queued', 'job.failed:failed']);
    expect(ofJob(cancelled.id)).toEqual(['job.cancelled:cancelled']);
    // data.sequence is the job_events id: it grows with every event of the job.
    const sequences = bodies.filter((b) => b.data.job.id === j.id).map((b) => b.data.sequence as number);
    expect(sequences.every((n, i) => Number.isInteger(n) && (i === 0 || n > sequences[i - 1]!))).toBe(true);
    for (const r of got) {
      expect(r.verification).toEqual([null]);
      // The client package's verifier agrees, and enforces ±5 min around the receiver's clock.
      const now = Number(r.headers['webhook-timestamp']) * 1000;
      await expect(verifyWebhook(all.secret, r.headers, r.body, { now })).resolves.toBeTruthy();
      await expect(verifyWebhook(all.secret, r.headers, r.body, { now: now + 301_000 })).rejects.toThrow(
        /old/,
      );
      await expect(verifyWebhook(all.secret, r.headers, r.body, { now: now - 301_000 })).rejects.toThrow(
        /future/,
      );
      expect(Math.abs(Number(r.headers['webhook-timestamp']) - r.at / 1000)).toBeLessThan(5);
    }
    expect(new Set(got.map((r) => r.headers['webhook-id'])).size).toBe(8);
    expect(got).toHaveLength(8);
    const checkpoint = bodies.find((b) => b.type === 'job.checkpoint')!;
    expect(checkpoint.data).toMatchObject({
      checkpoint_id: 'ckpt_1',
      step: 50,
      job: { metadata: { team: 'math' } },
    });

    const ends = await waitFor('3 filtered deliveries', async () => {
      const log = await received('life-end');
      return log.length >= 3 && log;
    });
    expect(ends.map((r) => JSON.parse(r.body).type).sort()).toEqual([
      'job.cancelled',
      'job.failed',
      'job.succeeded',
    ]);
    expect(ends.every((r) => r.verification[0] === null)).toBe(true);
    const log = await deliveriesOf(a, onlyEnd.id);
    expect(log.map((d) => d.status)).toEqual(['delivered', 'delivered', 'delivered']);
    expect(log[0]!.attempt_log[0]).toMatchObject({ attempt: 1, response_status: 200, response_body: 'ok' });
  });

  it.concurrent('a job driven through the real API and runner protocol notifies every step, once', async () => {
    const user = await newAccount('whlife');
    const ep = await expectJson<{ id: string; secret: string }>('/v1/webhooks/endpoints', 201, {
      key: user.apiKey,
      json: { url: `${receiver}/hook/protocol`, event_types: ['job.*'] },
    });
    await control('protocol', { secrets: [ep.secret] });
    const runner = await newRunner(user);
    const job = await submitJob(user, { metadata: { team: 'math' } });
    const leased = (await lease(runner.token))!;
    const url = `/v1/runner/jobs/${job.id}`;
    const events = {
      lease_id: leased.lease_id,
      attempt: 1,
      events: [
        { seq: 1, type: 'job.progress', data: { step: 1 } },
        { seq: 2, type: 'job.evaluated', data: { step: 2, metrics: { 'eval/accuracy': 0.25 } } },
      ],
    };
    await expectJson(`${url}/events`, 200, { key: runner.token, json: events });
    await expectJson(`${url}/events`, 200, { key: runner.token, json: events }); // a retried batch
    const bytes = new TextEncoder().encode('adapter weights');
    const init = await expectJson<{ checkpoint_id: string; part_url: string }>(`${url}/checkpoints`, 201, {
      key: runner.token,
      json: { lease_id: leased.lease_id, step: 2 },
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
    const sha256 = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))]
      .map((b) => b.toString(16).padStart(2, '0'))
      .join('');
    await expectJson(`${url}/checkpoints/${init.checkpoint_id}/complete`, 200, {
      key: runner.token,
      json: { lease_id: leased.lease_id, parts: [part], sha256, size: bytes.byteLength },
    });
    await expectJson(`${url}/complete`, 200, { key: runner.token, json: { lease_id: leased.lease_id } });

    const got = await waitFor('5 deliveries', async () => {
      const log = await received('protocol');
      return log.length >= 5 && log;
    });
    await new Promise((r) => setTimeout(r, 1500)); // nothing more (no duplicate job.evaluated) may arrive
    const log = await received('protocol');
    const bodies = log.map(
      (r) =>
        JSON.parse(r.body) as { type: string; data: Record<string, unknown> & { job: { status: string } } },
    );
    expect(bodies.map((b) => `${b.type}:${b.data.job.status}`)).toEqual([
      'job.queued:queued',
      'job.started:running',
      'job.evaluated:running',
      'job.checkpoint:running',
      'job.succeeded:succeeded',
    ]);
    expect(log.every((r) => r.verification[0] === null)).toBe(true);
    expect(bodies[2]!.data).toMatchObject({ step: 2, metrics: { 'eval/accuracy': 0.25 } });
    expect(bodies[3]!.data).toMatchObject({ checkpoint_id: init.checkpoint_id });
    expect(got[0]!.headers['webhook-id']).not.toBe(got[1]!.headers['webhook-id']);
  });

  it.concurrent('500 three times then 200: delivered on attempt 4 with the same webhook-id', async () => {
    const a = await account();
    const ep = await endpoint(a, 'flaky');
    await control('flaky', { script: [{ status: 500, body: 'boom' }, { status: 500 }, { status: 500 }] });
    const j = await job(a.accountId);
    await j.event('job.succeeded', 'succeeded');
    const got = await waitFor('4 attempts', async () => {
      const log = await received('flaky');
      return log.length >= 4 && log;
    });
    expect(new Set(got.map((r) => r.headers['webhook-id'])).size).toBe(1);
    expect(got.every((r) => r.verification[0] === null)).toBe(true);
    const [delivery] = await waitFor('delivered', async () => {
      const d = await deliveriesOf(a, ep.id);
      return d[0]?.status === 'delivered' && d;
    });
    expect(delivery!.attempts).toBe(4);
    expect(delivery!.attempt_log.map((t) => t.response_status)).toEqual([500, 500, 500, 200]);
    expect(delivery!.attempt_log[0]!.response_body).toBe('boom');
    expect(delivery!.event_id).toBe(got[0]!.headers['webhook-id']);
  });

  it.concurrent('receiver down past the last attempt → dead; redeliver and recover → delivered, same webhook-id', async () => {
    const a = await account();
    const ep = await endpoint(a, 'down');
    await control('down', { fallback: { destroy: true } });
    const first = await a.call('POST', `/endpoints/${ep.id}/test`);
    expect(first.status).toBe(202);
    const second = await a.call('POST', `/endpoints/${ep.id}/test`);
    const dead = await waitFor('both dead', async () => {
      const d = await deliveriesOf(a, ep.id);
      return d.length === 2 && d.every((x) => x.status === 'dead') && d;
    });
    expect(dead.map((d) => d.attempts)).toEqual([5, 5]);
    expect(
      dead[0]!.attempt_log.every(
        (t) => t.response_status === null && t.error?.startsWith('connection failed'),
      ),
    ).toBe(true);

    await control('down', { fallback: { status: 200, body: 'back' } });
    const again = await a.call('POST', `/deliveries/${first.body.id}/redeliver`);
    expect(again.status).toBe(202);
    await waitFor(
      'redelivered',
      async () => (await a.call('GET', `/deliveries/${first.body.id}`)).body.status === 'delivered',
    );
    const log = await received('down');
    expect(log.at(-1)!.headers['webhook-id']).toBe(first.body.event_id);
    expect(log.at(-1)!.verification).toEqual([null]);

    const recovered = await a.call('POST', `/endpoints/${ep.id}/recover`, {
      since: new Date(Date.now() - 3600_000).toISOString(),
    });
    expect(recovered.body).toEqual({ redelivering: 1 });
    await waitFor(
      'recovered',
      async () => (await a.call('GET', `/deliveries/${second.body.id}`)).body.status === 'delivered',
    );
    const final = await a.call('GET', `/deliveries/${second.body.id}`);
    expect(final.body.attempts).toBe(6);
    expect((await received('down')).at(-1)!.headers['webhook-id']).toBe(second.body.event_id);
  });

  it.concurrent('secret rotation: both signatures are sent and each verifies with its own secret', async () => {
    const a = await account();
    const ep = await endpoint(a, 'rotate');
    const rotated = await a.call('POST', `/endpoints/${ep.id}/rotate-secret`);
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).not.toBe(ep.secret);
    expect(Date.parse(rotated.body.previous_secret_expires_at) - Date.now()).toBeGreaterThan(23.9 * 3600_000);
    await control('rotate', { secrets: [ep.secret, rotated.body.secret] });
    await a.call('POST', `/endpoints/${ep.id}/test`);
    const [r] = await waitFor('rotated delivery', async () => {
      const log = await received('rotate');
      return log.length >= 1 && log;
    });
    expect(r!.verification).toEqual([null, null]);
    const signatures = r!.headers['webhook-signature']!.split(' ');
    expect(signatures).toHaveLength(2);
    const ts = new Date(Number(r!.headers['webhook-timestamp']) * 1000);
    expect(signatures[0]).toBe(new Webhook(rotated.body.secret).sign(r!.headers['webhook-id']!, ts, r!.body));
    expect(signatures[1]).toBe(new Webhook(ep.secret).sign(r!.headers['webhook-id']!, ts, r!.body));
    expect(JSON.parse(r!.body)).toMatchObject({ type: 'webhook.test', data: { endpoint_id: ep.id } });
  });

  it.concurrent('a later event of a job waits while an earlier one is retrying', async () => {
    const a = await account();
    await endpoint(a, 'ordered');
    await control('ordered', { script: [{ status: 503, headers: { 'retry-after': '2' } }, { status: 500 }] });
    const j = await job(a.accountId);
    await j.event('job.queued', 'queued');
    await j.event('job.started', 'running');
    await j.event('job.succeeded', 'succeeded');
    const log = await waitFor('5 requests', async () => {
      const l = await received('ordered');
      return l.length >= 5 && l;
    });
    expect(log.map((r) => JSON.parse(r.body).type)).toEqual([
      'job.queued',
      'job.queued',
      'job.queued',
      'job.started',
      'job.succeeded',
    ]);
    // Retry-After: 2 on the 503 beat the 1 s schedule.
    expect(log[1]!.at - log[0]!.at).toBeGreaterThanOrEqual(1900);
  });

  it.concurrent('410 Gone disables the endpoint at once and tells the account', async () => {
    const a = await account();
    const watcher = await endpoint(a, 'watcher', { event_types: ['webhook.endpoint.disabled'] });
    const gone = await endpoint(a, 'gone');
    await control('gone', { fallback: { status: 410 } });
    await a.call('POST', `/endpoints/${gone.id}/test`);
    const notice = await waitFor('disabled notice', async () => (await received('watcher'))[0]);
    expect(JSON.parse(notice.body)).toMatchObject({
      type: 'webhook.endpoint.disabled',
      data: { endpoint_id: gone.id, reason: 'gone' },
    });
    expect(notice.verification).toEqual([null]);
    expect((await a.call('GET', `/endpoints/${gone.id}`)).body).toMatchObject({
      enabled: false,
      disabled_reason: 'gone',
    });
    expect((await deliveriesOf(a, gone.id))[0]).toMatchObject({ status: 'dead', attempts: 1 });
    expect((await received('gone')).length).toBe(1);
    const events = await a.call('GET', '/events?type=webhook.endpoint.disabled');
    expect(events.body.data).toHaveLength(1);
    expect((await a.call('POST', `/endpoints/${gone.id}/test`)).status).toBe(409);
    expect(watcher.id).not.toBe(gone.id);
  });

  it.concurrent('an endpoint failing for 5 days is disabled with an account event', async () => {
    const a = await account();
    const ep = await endpoint(a, 'five-days');
    await control('five-days', { fallback: { status: 500 } });
    // Five days cannot pass in a test: the endpoint's failure streak is backdated instead.
    await db
      .update(webhookEndpoints)
      .set({ failingSince: Date.now() - 5 * 86400_000 + 1000 })
      .where(eq(webhookEndpoints.id, ep.id));
    await a.call('POST', `/endpoints/${ep.id}/test`);
    await waitFor(
      'disabled',
      async () => (await a.call('GET', `/endpoints/${ep.id}`)).body.enabled === false,
    );
    expect((await a.call('GET', `/endpoints/${ep.id}`)).body.disabled_reason).toBe('failing');
    const events = await a.call('GET', '/events?type=webhook.endpoint.disabled');
    expect(events.body.data[0].payload.data).toMatchObject({ endpoint_id: ep.id, reason: 'failing' });
    // Re-enabling clears the streak.
    const enabled = await a.call('PATCH', `/endpoints/${ep.id}`, { enabled: true });
    expect(enabled.body).toMatchObject({ enabled: true, disabled_reason: null, failing_since: null });
  });

  it.concurrent("a job spec's webhook gets its own endpoint, signed with the account's job secret", async () => {
    const a = await account();
    const { body } = await a.call('POST', '/job-secret/rotate');
    expect(body.secret).toMatch(/^whsec_/);
    await control('per-job', { secrets: [body.secret] });
    const j = await job(a.accountId, {
      webhook: { url: `${receiver}/hook/per-job`, events: ['job.started', 'job.succeeded'] },
    });
    await j.event('job.queued', 'queued');
    await j.event('job.started', 'running');
    await j.event('job.succeeded', 'succeeded');
    const log = await waitFor('2 deliveries', async () => {
      const l = await received('per-job');
      return l.length >= 2 && l;
    });
    expect(log.map((r) => JSON.parse(r.body).type)).toEqual(['job.started', 'job.succeeded']);
    expect(log.every((r) => r.verification[0] === null)).toBe(true);
    const listed = await a.call('GET', `/endpoints?job_id=${j.id}`);
    expect(listed.body.data).toHaveLength(1);
    expect((await a.call('GET', '/endpoints')).body.data).toHaveLength(0);
  });
});

/** A delivery written straight to D1 and not enqueued, so only the test drives it. */
async function parkedDelivery(
  a: Account,
  endpointId: string,
  fields: Partial<typeof webhookDeliveries.$inferInsert> = {},
) {
  const now = Date.now();
  const id = `${now.toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  await db.insert(webhookEvents).values({
    id: `evt_${id}`,
    accountId: a.accountId,
    type: 'webhook.test',
    payload: JSON.stringify({ type: 'webhook.test', timestamp: new Date(now).toISOString(), data: {} }),
    createdAt: now,
  });
  const [row] = await db
    .insert(webhookDeliveries)
    .values({
      id: `whd_${id}`,
      accountId: a.accountId,
      endpointId,
      eventId: `evt_${id}`,
      eventType: 'webhook.test',
      jobId: null,
      status: 'pending',
      nextAttemptAt: now,
      createdAt: now,
      updatedAt: now,
      ...fields,
    })
    .returning();
  return row!;
}

describe('consumer edge cases', () => {
  it('tells job submission which spec.webhook URLs this deployment refuses', async () => {
    expect(await jobWebhookUrlProblem(testEnv, `${receiver}/hook/x`)).toBeNull();
    expect(await jobWebhookUrlProblem(testEnv, 'https://192.168.1.10/hook')).toEqual({
      path: 'webhook.url',
      message: expect.stringContaining('private'),
    });
    const production = { ...testEnv, ENVIRONMENT: 'production' };
    expect((await jobWebhookUrlProblem(production, `${receiver}/hook/x`))?.message).toContain('https');
  });

  it('in production mode a loopback endpoint is refused at delivery time, without a request', async () => {
    const a = await account();
    const ep = await endpoint(a, 'prod-ssrf');
    const parked = await parkedDelivery(a, ep.id);
    const production = webhookSettings({ ...testEnv, ENVIRONMENT: 'production' });
    expect(production.policy.allowLoopback).toBe(false);
    expect(await processDelivery(testEnv, parked.id, production)).toBe('retrying');
    const d = await a.call('GET', `/deliveries/${parked.id}`);
    expect(d.body.attempt_log[0]).toMatchObject({
      response_status: null,
      error: expect.stringContaining('https'),
    });
    expect(await received('prod-ssrf')).toHaveLength(0);
  });

  it('the cron takes back a claim a crashed consumer left behind, and re-enqueues overdue deliveries', async () => {
    const a = await account();
    const ep = await endpoint(a, 'crashed');
    const now = Date.now();
    const crashed = await parkedDelivery(a, ep.id, { status: 'sending', leaseUntil: now - 1 });
    const lost = await parkedDelivery(a, ep.id, { status: 'retrying', nextAttemptAt: now - 120_000 });
    expect(await sweepWebhookDeliveries(testEnv)).toBeGreaterThanOrEqual(2);
    for (const parked of [crashed, lost]) {
      await waitFor(
        'swept delivery',
        async () => (await a.call('GET', `/deliveries/${parked.id}`)).body.status === 'delivered',
      );
    }
    const ids = (await received('crashed')).map((r) => r.headers['webhook-id']).sort();
    expect(ids).toEqual([crashed.eventId, lost.eventId].sort());
  });
});

describe('OpenAPI', () => {
  it('documents every webhook route and, in the webhooks section, an example body per event type', async () => {
    const doc = (await (await SELF.fetch('http://api.test/v1/openapi.json')).json()) as {
      paths: Record<string, Record<string, unknown>>;
      webhooks: Record<
        string,
        { post: { requestBody: { content: { 'application/json': { example: { type: string } } } } } }
      >;
    };
    for (const [path, method] of [
      ['/v1/webhooks/endpoints', 'post'],
      ['/v1/webhooks/endpoints', 'get'],
      ['/v1/webhooks/endpoints/{id}', 'patch'],
      ['/v1/webhooks/endpoints/{id}', 'delete'],
      ['/v1/webhooks/endpoints/{id}/rotate-secret', 'post'],
      ['/v1/webhooks/endpoints/{id}/test', 'post'],
      ['/v1/webhooks/endpoints/{id}/recover', 'post'],
      ['/v1/webhooks/endpoints/{id}/deliveries', 'get'],
      ['/v1/webhooks/deliveries/{id}/redeliver', 'post'],
      ['/v1/webhooks/job-secret/rotate', 'post'],
      ['/v1/webhooks/events', 'get'],
    ] as const) {
      expect([path, method, doc.paths[path]?.[method] !== undefined]).toEqual([path, method, true]);
    }
    for (const type of [
      'job.queued',
      'job.started',
      'job.checkpoint',
      'job.evaluated',
      'job.succeeded',
      'job.failed',
      'job.cancelled',
      'webhook.test',
    ]) {
      expect(doc.webhooks[type]?.post.requestBody.content['application/json'].example.type).toBe(type);
    }
  });
});
