import { expect, it } from 'vitest';
import { call, expectJson, newAccount } from './helpers';

it('serves the OpenAPI document and docs page offline', async () => {
  const doc = await expectJson<{ openapi: string; paths: Record<string, unknown> }>('/v1/openapi.json', 200);
  expect(doc.openapi).toBe('3.1.0');
  const paths = Object.keys(doc.paths);
  for (const path of [
    '/v1/account',
    '/v1/keys',
    '/v1/keys/{id}',
    '/v1/runner-keys',
    '/v1/runners',
    '/v1/artifacts',
    '/v1/artifacts/uploads',
    '/v1/artifacts/{id}/parts/{part_number}',
    '/v1/artifacts/{id}/complete',
    '/v1/artifacts/{id}/content',
    '/v1/jobs',
    '/v1/jobs/{id}',
    '/v1/jobs/{id}/cancel',
    '/v1/jobs/{id}/pause',
    '/v1/jobs/{id}/resume',
    '/v1/jobs/{id}/events',
    '/v1/jobs/{id}/stream',
    '/v1/jobs/{id}/metrics',
    '/v1/jobs/{id}/checkpoints',
    '/v1/jobs/{id}/checkpoints/{checkpoint_id}/content',
    '/v1/jobs/{id}/rollouts',
    '/v1/plugins',
    '/v1/plugins/{owner}/{name}',
    '/v1/plugins/{owner}/{name}/{version}/bundle',
    '/v1/plugins/{owner}/{name}/{version}/deprecate',
    '/v1/runner/register',
    '/v1/runner/lease',
    '/v1/runner/jobs/{id}/heartbeat',
    '/v1/runner/jobs/{id}/events',
    '/v1/runner/jobs/{id}/metrics',
    '/v1/runner/jobs/{id}/checkpoints',
    '/v1/runner/jobs/{id}/checkpoints/{checkpoint_id}/parts/{part_number}',
    '/v1/runner/jobs/{id}/checkpoints/{checkpoint_id}/complete',
    '/v1/runner/jobs/{id}/rollouts/{step}',
    '/v1/runner/jobs/{id}/complete',
    '/v1/runner/jobs/{id}/fail',
    '/v1/runner/jobs/{id}/ack',
    '/v1/runner/artifacts/{id}/content',
    '/v1/runner/bundles/{sha256}',
  ]) {
    expect(paths, path).toContain(path);
  }
  const schemas = Object.keys((doc as { components?: { schemas?: object } }).components?.schemas ?? {});
  expect(schemas).toEqual(
    expect.arrayContaining(['JobSpecInput', 'JobSpec', 'Hyperparameters', 'Lease', 'MetricsBatch']),
  );
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
