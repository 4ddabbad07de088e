import { describe, expect, it } from 'vitest';
import { isProduction } from '../src/env';
import { webhookSettings } from '../src/webhooks/engine';
import { checkEndpointUrl, forbiddenAddressReason } from '../src/webhooks/url-safety';
import { call, newAccount } from './helpers';

// Every IPv6 spelling that embeds or translates to an IPv4 address is refused, and one definition
// of production holds for every component.

const production = { allowLoopback: false };
const dev = { allowLoopback: true };

describe('IPv6 forms that embed IPv4', () => {
  it('refuses each form of 169.254.169.254 (and of a public address) in production', () => {
    const cases: [string, string][] = [
      ['::a9fe:a9fe', 'link-local'], // IPv4-compatible
      ['::169.254.169.254', 'link-local'],
      ['::ffff:a9fe:a9fe', 'link-local'], // IPv4-mapped
      ['::ffff:0:a9fe:a9fe', 'link-local'], // IPv4-translated (SIIT)
      ['::ffff:0:169.254.169.254', 'link-local'],
      ['64:ff9b::a9fe:a9fe', 'link-local'], // NAT64 well-known prefix
      ['64:ff9b:1::a9fe:a9fe', 'local-use NAT64 (64:ff9b:1::/48)'],
      ['64:ff9b:1:a9fe:a9:fe00::', 'local-use NAT64 (64:ff9b:1::/48)'],
      ['2002:a9fe:a9fe::1', 'link-local'], // 6to4
      ['2001:0:a9fe:a9fe::1', 'Teredo (2001::/32)'],
      ['2001::5ef5:79fd:0:59d:a0e5:fba5', 'Teredo (2001::/32)'],
      ['::ffff:8.8.8.8', 'IPv4-mapped IPv6'],
      ['::808:808', 'IPv4-compatible IPv6'],
      ['64:ff9b::808:808', 'NAT64 (64:ff9b::/96)'],
      ['2002:808:808::1', '6to4 (2002::/16)'],
    ];
    for (const [address, reason] of cases)
      expect([address, forbiddenAddressReason(address, production)]).toEqual([address, reason]);
    // Ordinary public IPv6 stays allowed; :: and ::1 keep their own reasons.
    expect(forbiddenAddressReason('2606:4700:4700::1111', production)).toBeNull();
    expect(forbiddenAddressReason('::', production)).toBe('unspecified');
    expect(forbiddenAddressReason('::1', production)).toBe('loopback');
    expect(forbiddenAddressReason('::ffff:127.0.0.1', dev)).toBeNull();
    expect(forbiddenAddressReason('::a9fe:a9fe', dev)).toBe('link-local');
  });

  it('refuses them as endpoint URLs, also in development', () => {
    for (const url of [
      'https://[::a9fe:a9fe]/',
      'https://[::ffff:0:a9fe:a9fe]/',
      'https://[64:ff9b:1::a9fe:a9fe]/',
      'https://[2002:a9fe:a9fe::1]/',
      'https://[2001:0:a9fe:a9fe::1]/',
    ]) {
      expect(checkEndpointUrl(url, production), url).toMatchObject({ code: 'webhook_url_forbidden' });
      expect(checkEndpointUrl(url, dev), url).toMatchObject({ code: 'webhook_url_forbidden' });
    }
  });

  it('POST /v1/webhooks/endpoints answers 400 for each', async () => {
    const account = await newAccount();
    for (const url of [
      'https://[::a9fe:a9fe]/',
      'https://[64:ff9b:1::a9fe:a9fe]/',
      'https://[2002:a9fe:a9fe::1]/',
    ]) {
      const res = await call('/v1/webhooks/endpoints', { key: account.apiKey, json: { url } });
      expect(res.status, url).toBe(400);
    }
  });
});

describe('one definition of production', () => {
  it('is every ENVIRONMENT except development, for bootstrap and webhooks alike', () => {
    for (const environment of ['production', 'staging', 'prod', '', undefined]) {
      expect(isProduction({ ENVIRONMENT: environment }), String(environment)).toBe(true);
      const settings = webhookSettings({
        ENVIRONMENT: environment,
        WEBHOOKS_ALLOW_LOOPBACK: 'true',
      } as never);
      expect(settings.production, String(environment)).toBe(true);
      expect(settings.policy.allowLoopback).toBe(false);
      expect(settings.resolver).not.toBeNull();
    }
    expect(isProduction({ ENVIRONMENT: 'development' })).toBe(false);
    expect(
      webhookSettings({ ENVIRONMENT: 'development', WEBHOOKS_ALLOW_LOOPBACK: 'true' } as never).policy
        .allowLoopback,
    ).toBe(true);
  });
});
