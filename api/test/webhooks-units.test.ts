// Signing, schedule, Retry-After, SSRF rules and the one-attempt sender, in workerd. The sender
// talks to the real loopback receiver started by webhooks.receiver.ts.
import { Webhook } from 'standardwebhooks';
import { describe, expect, inject, it } from 'vitest';
import {
  nextRetryDelaySeconds,
  parseRetryAfter,
  RETRY_SCHEDULE_SECONDS,
  retrySchedule,
} from '../src/webhooks/schedule';
import { attemptDelivery } from '../src/webhooks/send';
import { newWebhookSecret, signature, signatureHeader } from '../src/webhooks/signing';
import {
  checkEndpointTarget,
  checkEndpointUrl,
  forbiddenAddressReason,
  type Resolver,
} from '../src/webhooks/url-safety';

const receiver = `http://127.0.0.1:${inject('webhookReceiverPort')}`;

async function control(name: string, config: object) {
  await fetch(`${receiver}/control/${name}`, { method: 'POST', body: JSON.stringify(config) });
}
async function received(name: string) {
  return (await (await fetch(`${receiver}/control/${name}/log`)).json()) as {
    headers: Record<string, string>;
    body: string;
    verification: (string | null)[];
  }[];
}

describe('signing', () => {
  it('makes whsec_ secrets of 32 random bytes', () => {
    const secret = newWebhookSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(atob(secret.slice(6))).toHaveLength(32);
    expect(newWebhookSecret()).not.toBe(secret);
  });

  it('signs exactly like the standardwebhooks package, one signature per live secret', async () => {
    for (let i = 0; i < 10; i++) {
      const [a, b] = [newWebhookSecret(), newWebhookSecret()];
      const body = JSON.stringify({ type: 'job.started', data: { i, text: 'ünï ✓' } });
      const ts = 1_790_000_000 + i;
      const reference = new Webhook(a).sign(`evt_${i}`, new Date(ts * 1000), body);
      expect(await signature(a, `evt_${i}`, ts, body)).toBe(reference);
      const header = await signatureHeader([a, b], `evt_${i}`, ts, body);
      expect(header.split(' ')).toEqual([
        reference,
        new Webhook(b).sign(`evt_${i}`, new Date(ts * 1000), body),
      ]);
    }
  });
});

describe('retry schedule', () => {
  it('follows 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h with ±20 % jitter, then gives up', () => {
    expect(RETRY_SCHEDULE_SECONDS).toEqual([5, 300, 1800, 7200, 18000, 36000, 36000]);
    expect(nextRetryDelaySeconds(1, RETRY_SCHEDULE_SECONDS, null, () => 0)).toBe(4);
    expect(nextRetryDelaySeconds(1, RETRY_SCHEDULE_SECONDS, null, () => 1)).toBe(6);
    expect(nextRetryDelaySeconds(4, RETRY_SCHEDULE_SECONDS, null, () => 0.5)).toBe(7200);
    expect(nextRetryDelaySeconds(7, RETRY_SCHEDULE_SECONDS, null, () => 0.25)).toBe(36000 * 0.9);
    expect(nextRetryDelaySeconds(8, RETRY_SCHEDULE_SECONDS)).toBeNull();
    const total = RETRY_SCHEDULE_SECONDS.reduce((a, b) => a + b, 0);
    expect(total / 3600).toBeCloseTo(27.6, 1);
  });

  it('honours a longer Retry-After, capped at 24 h, but never shortens the schedule', () => {
    expect(nextRetryDelaySeconds(1, RETRY_SCHEDULE_SECONDS, 120, () => 0.5)).toBe(120);
    expect(nextRetryDelaySeconds(2, RETRY_SCHEDULE_SECONDS, 1, () => 0.5)).toBe(300);
    expect(nextRetryDelaySeconds(1, RETRY_SCHEDULE_SECONDS, 10 * 86400, () => 0.5)).toBe(86400);
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-11-22T08:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120);
    expect(parseRetryAfter('Sun, 22 Nov 2026 08:05:00 GMT', now)).toBe(300);
    expect(parseRetryAfter('Sun, 22 Nov 2026 07:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeNull();
    expect(parseRetryAfter(null, now)).toBeNull();
  });

  it('takes a shortened schedule from WEBHOOKS_RETRY_SCHEDULE and refuses a malformed one', () => {
    expect(retrySchedule(undefined)).toBe(RETRY_SCHEDULE_SECONDS);
    expect(retrySchedule('1, 2,3')).toEqual([1, 2, 3]);
    expect(() => retrySchedule('1,soon')).toThrow(/WEBHOOKS_RETRY_SCHEDULE/);
  });
});

describe('SSRF rules', () => {
  const production = { allowLoopback: false };
  const dev = { allowLoopback: true };

  it('classifies addresses: loopback, private, link-local, CGNAT, mapped and NAT64 forms', () => {
    const cases: [string, string | null][] = [
      ['127.0.0.1', 'loopback'],
      ['::1', 'loopback'],
      ['10.1.2.3', 'private'],
      ['172.31.255.255', 'private'],
      ['172.32.0.1', null],
      ['192.168.1.1', 'private'],
      ['169.254.169.254', 'link-local'],
      ['100.64.0.1', 'carrier-grade NAT'],
      ['0.0.0.0', '"this network"'],
      ['fd00::1', 'unique local (private)'],
      ['fe80::1', 'link-local'],
      ['::ffff:10.0.0.1', 'private'],
      ['::ffff:7f00:1', 'loopback'],
      ['64:ff9b::a9fe:a9fe', 'link-local'],
      ['224.0.0.1', 'multicast'],
      ['8.8.8.8', null],
      ['2606:4700:4700::1111', null],
    ];
    for (const [address, reason] of cases)
      expect([address, forbiddenAddressReason(address, production)]).toEqual([address, reason]);
    expect(forbiddenAddressReason('127.0.0.1', dev)).toBeNull();
    expect(forbiddenAddressReason('10.0.0.1', dev)).toBe('private');
  });

  it('in production: https only, no IP literals in private ranges (in any spelling), no internal names', () => {
    const refused = [
      'http://hooks.example.com/x',
      'https://127.0.0.1/x',
      'https://2130706433/x', // 127.0.0.1 as one decimal number
      'https://0x7f.1/x',
      'https://[::1]/x',
      'https://[::ffff:192.168.0.1]/x',
      'https://10.0.0.8/x',
      'https://169.254.169.254/latest/meta-data',
      'https://localhost/x',
      'https://api.localhost/x',
      'https://printer.local/x',
      'https://intranet/x',
      'https://user:pw@hooks.example.com/x',
      'ftp://hooks.example.com/x',
      'not a url',
    ];
    for (const url of refused)
      expect([url, 'url' in checkEndpointUrl(url, production)]).toEqual([url, false]);
    expect('url' in checkEndpointUrl('https://hooks.example.com/cgrpo?token=1', production)).toBe(true);
    expect('url' in checkEndpointUrl('https://8.8.8.8/x', production)).toBe(true);
  });

  it('in local development allows loopback (http too) but still refuses private networks', () => {
    expect('url' in checkEndpointUrl('http://127.0.0.1:8080/x', dev)).toBe(true);
    expect('url' in checkEndpointUrl('http://localhost:8080/x', dev)).toBe(true);
    expect('url' in checkEndpointUrl('http://[::1]:8080/x', dev)).toBe(true);
    expect(checkEndpointUrl('http://10.0.0.1/x', dev)).toMatchObject({ code: 'webhook_url_forbidden' });
    expect(checkEndpointUrl('http://hooks.example.com/x', dev)).toMatchObject({
      code: 'webhook_url_forbidden',
    });
  });

  it('checks every address a host name resolves to', async () => {
    // The public internet (and so real DNS) is not reachable here: a fixed table stands in for the resolver.
    const dns: Record<string, string[]> = {
      'hooks.example.com': ['93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c'],
      'rebind.example.com': ['93.184.215.14', '10.0.0.5'],
      'metadata.example.com': ['169.254.169.254'],
      'empty.example.com': [],
    };
    const resolve: Resolver = async (host) => {
      const found = dns[host];
      if (!found) throw new Error('NXDOMAIN');
      return found;
    };
    expect('url' in (await checkEndpointTarget('https://hooks.example.com/x', production, resolve))).toBe(
      true,
    );
    expect(await checkEndpointTarget('https://rebind.example.com/x', production, resolve)).toMatchObject({
      message: expect.stringContaining('10.0.0.5, a private address'),
    });
    expect(await checkEndpointTarget('https://metadata.example.com/x', production, resolve)).toMatchObject({
      message: expect.stringContaining('link-local'),
    });
    expect(await checkEndpointTarget('https://empty.example.com/x', production, resolve)).toMatchObject({
      code: 'webhook_url_forbidden',
    });
    expect(await checkEndpointTarget('https://nowhere.example.com/x', production, resolve)).toMatchObject({
      message: expect.stringContaining('NXDOMAIN'),
    });
  });
});

describe('one attempt over real HTTP', () => {
  const secret = newWebhookSecret();
  const request = (name: string) => ({
    url: `${receiver}/hook/${name}`,
    eventId: 'evt_unit_1',
    body: JSON.stringify({ type: 'webhook.test', timestamp: new Date().toISOString(), data: {} }),
    secrets: [secret],
    timestampSeconds: Math.floor(Date.now() / 1000),
  });

  it('sends the three Standard Webhooks headers, verifiable by the reference library', async () => {
    await control('unit-ok', { secrets: [secret], script: [{ status: 204 }] });
    const result = await attemptDelivery(request('unit-ok'));
    expect(result).toMatchObject({ ok: true, statusCode: 204, error: null });
    const [got] = await received('unit-ok');
    expect(got!.verification).toEqual([null]);
    expect(got!.headers['webhook-id']).toBe('evt_unit_1');
    expect(got!.headers['content-type']).toBe('application/json');
  });

  it('keeps only the first 1 KB of a response body', async () => {
    await control('unit-big', { script: [{ status: 500, body: 'x'.repeat(5000) }] });
    const result = await attemptDelivery(request('unit-big'));
    expect(result).toMatchObject({ ok: false, statusCode: 500 });
    expect(result.responseBody).toBe('x'.repeat(1024));
  });

  it('never follows a redirect: a 3xx is a failure', async () => {
    const result = await attemptDelivery({
      ...request('unit-redirect'),
      url: `${receiver}/redirect/unit-target`,
    });
    expect(result).toMatchObject({ ok: false, statusCode: 302 });
    expect(result.error).toContain('not followed');
    expect(await received('unit-target')).toHaveLength(0);
  });

  it('reads Retry-After from a 429 and a 503', async () => {
    await control('unit-429', {
      script: [
        { status: 429, headers: { 'retry-after': '90' } },
        { status: 503, headers: { 'retry-after': '7' } },
      ],
    });
    expect((await attemptDelivery(request('unit-429'))).retryAfterSeconds).toBe(90);
    expect((await attemptDelivery(request('unit-429'))).retryAfterSeconds).toBe(7);
  });

  it('gives up after the timeout, and reports dropped connections', async () => {
    await control('unit-slow', { script: [{ status: 200, delayMs: 1500 }, { destroy: true }] });
    const slow = await attemptDelivery(request('unit-slow'), { timeoutMs: 300 });
    expect(slow).toMatchObject({ ok: false, statusCode: null, error: 'no response within 0.3 s' });
    const dropped = await attemptDelivery(request('unit-slow'));
    expect(dropped).toMatchObject({ ok: false, statusCode: null });
    expect(dropped.error).toMatch(/^connection failed/);
  });
});
