import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { signWebhook, verifyWebhook, WebhookVerificationError } from '../src/webhooks';

// The reference implementation's own test vector (standard-webhooks/libraries, JavaScript tests).
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const ID = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
const TS = 1614265330;
const BODY = '{"test": 2432232314}';
const EXPECTED = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';

function expectCode(promise: Promise<unknown>, code: string) {
  return expect(promise).rejects.toSatisfy((e) => e instanceof WebhookVerificationError && e.code === code);
}

describe('signWebhook', () => {
  it('matches the spec test vector', async () => {
    expect(await signWebhook(SECRET, ID, TS, BODY)).toBe(EXPECTED);
  });

  it('matches the standardwebhooks package for random secrets, ids and unicode bodies', async () => {
    for (let i = 0; i < 20; i++) {
      const key = crypto.getRandomValues(new Uint8Array(32));
      const secret = `whsec_${btoa(String.fromCharCode(...key))}`;
      const id = `evt_${i}_${Math.random().toString(36).slice(2)}`;
      const body = JSON.stringify({
        type: 'job.succeeded',
        data: { i, note: 'Grüße ✓ 🚀', r: Math.random() },
      });
      const ts = 1_700_000_000 + i * 977;
      expect(await signWebhook(secret, id, ts, body)).toBe(
        new Webhook(secret).sign(id, new Date(ts * 1000), body),
      );
      // Bytes and string bodies sign alike.
      expect(await signWebhook(secret, id, ts, new TextEncoder().encode(body))).toBe(
        await signWebhook(secret, id, ts, body),
      );
    }
  });
});

describe('verifyWebhook', () => {
  const secret = `whsec_${btoa(String.fromCharCode(...new Uint8Array(32).fill(7)))}`;
  const body = JSON.stringify({
    type: 'job.queued',
    timestamp: '2026-11-22T08:00:00.000Z',
    data: { job: { id: 'job_1' } },
  });
  const now = 1_790_000_000;

  async function headersAt(ts: number, s = secret) {
    return {
      'webhook-id': 'evt_1',
      'webhook-timestamp': String(ts),
      'webhook-signature': await signWebhook(s, 'evt_1', ts, body),
    };
  }

  it('accepts what the standardwebhooks package signs, and the package accepts what we sign', async () => {
    const wh = new Webhook(secret);
    const ts = Math.floor(Date.now() / 1000);
    const theirs = {
      'webhook-id': 'evt_1',
      'webhook-timestamp': String(ts),
      'webhook-signature': wh.sign('evt_1', new Date(ts * 1000), body),
    };
    expect((await verifyWebhook(secret, theirs, body)).type).toBe('job.queued');
    expect(wh.verify(body, await headersAt(ts))).toEqual(JSON.parse(body));
  });

  it('reads fetch Headers and Node-style header records alike', async () => {
    const h = await headersAt(now);
    const event = await verifyWebhook(secret, new Headers(h), body, { now: now * 1000 });
    expect(event.data).toEqual({ job: { id: 'job_1' } });
    const upper = {
      'Webhook-Id': h['webhook-id'],
      'WEBHOOK-TIMESTAMP': h['webhook-timestamp'],
      'webhook-signature': [h['webhook-signature']],
    };
    expect((await verifyWebhook(secret, upper, body, { now: new Date(now * 1000) })).type).toBe('job.queued');
  });

  it('honours the ±5 min tolerance exactly at its edges', async () => {
    const at = (ts: number) => headersAt(ts).then((h) => verifyWebhook(secret, h, body, { now: now * 1000 }));
    await expect(at(now - 300)).resolves.toBeTruthy();
    await expect(at(now + 300)).resolves.toBeTruthy();
    await expectCode(at(now - 301), 'timestamp_too_old');
    await expectCode(at(now + 301), 'timestamp_too_new');
    const wide = await headersAt(now - 3600);
    await expect(
      verifyWebhook(secret, wide, body, { now: now * 1000, toleranceSeconds: 3600 }),
    ).resolves.toBeTruthy();
  });

  it('accepts any one of several space-separated signatures (secret rotation)', async () => {
    const other = `whsec_${btoa(String.fromCharCode(...new Uint8Array(32).fill(9)))}`;
    const both = `${await signWebhook(other, 'evt_1', now, body)} ${await signWebhook(secret, 'evt_1', now, body)}`;
    const h = { 'webhook-id': 'evt_1', 'webhook-timestamp': String(now), 'webhook-signature': both };
    await expect(verifyWebhook(secret, h, body, { now: now * 1000 })).resolves.toBeTruthy();
    await expect(verifyWebhook(other, h, body, { now: now * 1000 })).resolves.toBeTruthy();
  });

  it('rejects tampering, wrong secrets, missing headers and malformed timestamps with a code', async () => {
    const h = await headersAt(now);
    const opts = { now: now * 1000 };
    await expectCode(verifyWebhook(secret, h, body.replace('job_1', 'job_2'), opts), 'no_matching_signature');
    await expectCode(
      verifyWebhook(secret, { ...h, 'webhook-id': 'evt_2' }, body, opts),
      'no_matching_signature',
    );
    await expectCode(verifyWebhook(`whsec_${btoa('another key')}`, h, body, opts), 'no_matching_signature');
    await expectCode(
      verifyWebhook(
        secret,
        { ...h, 'webhook-signature': `v2,${h['webhook-signature'].slice(3)}` },
        body,
        opts,
      ),
      'no_matching_signature',
    );
    await expectCode(verifyWebhook(secret, { 'webhook-id': 'evt_1' }, body, opts), 'missing_headers');
    await expectCode(
      verifyWebhook(secret, { ...h, 'webhook-timestamp': '12.5' }, body, opts),
      'invalid_timestamp',
    );
    await expectCode(verifyWebhook('whsec_%%%', h, body, opts), 'invalid_secret');
  });
});
