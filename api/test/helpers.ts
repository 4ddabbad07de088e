import { env, SELF } from 'cloudflare:test';
import { expect } from 'vitest';
import type { Env } from '../src/env';

// Helpers for API tests: real requests into the Worker under workerd, real local D1 and R2.
// Each test makes its own account, so files and tests never see each other's data.

export const testEnv = env as unknown as Env;
const BASE = 'http://api.test';

export interface CallOptions {
  method?: string;
  key?: string;
  json?: unknown;
  body?: BodyInit;
  headers?: Record<string, string>;
}

export async function call(path: string, options: CallOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (options.key) headers.authorization = `Bearer ${options.key}`;
  let body = options.body;
  if (options.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.json);
  }
  return SELF.fetch(`${BASE}${path}`, { method: options.method ?? (body ? 'POST' : 'GET'), headers, body });
}

/** Calls and asserts the status, returning the parsed JSON body. */
export async function expectJson<T = Record<string, unknown>>(
  path: string,
  status: number,
  options: CallOptions = {},
): Promise<T> {
  const res = await call(path, options);
  const text = await res.text();
  expect(res.status, `${options.method ?? 'GET'} ${path} → ${text}`).toBe(status);
  return (text ? JSON.parse(text) : null) as T;
}

let accounts = 0;
export interface TestAccount {
  accountId: string;
  handle: string;
  apiKey: string;
  registrationKey: string;
}

export async function newAccount(prefix = 'acct'): Promise<TestAccount> {
  accounts += 1;
  const handle = `${prefix}-${accounts}-${Math.random().toString(36).slice(2, 8)}`;
  const body = await expectJson<{ account: { id: string }; api_key: string; registration_key: string }>(
    '/v1/bootstrap',
    201,
    { json: { handle, name: handle } },
  );
  return { accountId: body.account.id, handle, apiKey: body.api_key, registrationKey: body.registration_key };
}

export async function newRunner(account: TestAccount, labels: string[] = [], capabilities: string[] = []) {
  const body = await expectJson<{ runner_id: string; token: string }>('/v1/runner/register', 201, {
    key: account.registrationKey,
    json: { name: 'test-runner', labels, capabilities },
  });
  return { id: body.runner_id, token: body.token };
}

export const minimalSpec = (extra: Record<string, unknown> = {}) => ({
  name: 'test job',
  model: { id: 'Qwen/Qwen3-0.6B' },
  datasets: { train: { uri: 'https://example.test/train.jsonl' } },
  ...extra,
});

export interface JobBody {
  id: string;
  status: string;
  attempt: number;
  retries: number;
  cancel_requested: boolean;
  pause_requested: boolean;
  error: { code: string; message: string } | null;
  spec: Record<string, unknown> & { hyperparameters: Record<string, unknown> };
}

export async function submitJob(
  account: TestAccount,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
) {
  return expectJson<JobBody>('/v1/jobs', 201, { key: account.apiKey, json: minimalSpec(extra), headers });
}

export interface LeaseBody {
  lease_id: string;
  job_id: string;
  attempt: number;
  spec: Record<string, unknown>;
  resume_from: { id: string; step: number } | null;
  last_step: number | null;
  plugins: { role: string; ref: string; builtin: boolean }[];
}

export async function lease(token: string, body: Record<string, unknown> = {}): Promise<LeaseBody | null> {
  const res = await call('/v1/runner/lease', { key: token, json: { wait_seconds: 0, ...body } });
  if (res.status === 204) return null;
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return JSON.parse(text) as LeaseBody;
}
