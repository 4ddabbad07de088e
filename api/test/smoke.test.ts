import { expect, it } from 'vitest';
import { call, expectJson, newAccount } from './helpers';

it('serves the OpenAPI document and docs page offline', async () => {
  const doc = await expectJson<{ openapi: string; paths: Record<string, unknown> }>('/v1/openapi.json', 200);
  expect(doc.openapi).toBe('3.1.0');
  expect(Object.keys(doc.paths)).toContain('/v1/jobs');
  const docs = await call('/docs');
  expect(docs.status).toBe(200);
  const html = await docs.text();
  expect(html).toContain('/v1/openapi.json');
  expect(html).not.toMatch(/https?:\/\/(cdn|unpkg)/);
});

it('bootstraps an account', async () => {
  const account = await newAccount();
  expect(account.apiKey).toMatch(/^cgrpo_sk_/);
});
