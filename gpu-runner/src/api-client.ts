// The runner's side of the runner protocol (@cgrpo/contract runner.ts): every request body is
// validated with the contract's schema before it leaves, every answer parsed with its schema.
// Transient failures (network errors, timeouts, 429, 5xx) are retried with capped exponential
// backoff; a 409 `lease_lost` means another runner owns the job now and is never retried.
import {
  type AckJob,
  AckJobSchema,
  BatchResultSchema,
  type CheckpointComplete,
  CheckpointCompleteSchema,
  type CheckpointInit,
  CheckpointInitResponseSchema,
  CheckpointInitSchema,
  CheckpointSchema,
  type CompleteJob,
  CompleteJobSchema,
  ErrorBodySchema,
  type EventsBatch,
  EventsBatchSchema,
  type FailJob,
  FailJobSchema,
  type HeartbeatRequest,
  HeartbeatRequestSchema,
  HeartbeatResponseSchema,
  type Lease,
  type LeaseRequest,
  LeaseRequestSchema,
  LeaseSchema,
  LeaseStateSchema,
  type MetricsBatch,
  MetricsBatchSchema,
  PartUploadResponseSchema,
  type RunnerRegisterRequest,
  RunnerRegisterRequestSchema,
  RunnerRegisterResponseSchema,
} from '@cgrpo/contract';
import type { Logger } from './log';

/** Every path the runner calls, in one place. */
export const RUNNER_ROUTES = {
  register: '/v1/runner/register',
  lease: '/v1/runner/lease',
  heartbeat: (job: string) => `/v1/runner/jobs/${job}/heartbeat`,
  events: (job: string) => `/v1/runner/jobs/${job}/events`,
  metrics: (job: string) => `/v1/runner/jobs/${job}/metrics`,
  rollouts: (job: string, step: number) => `/v1/runner/jobs/${job}/rollouts/${step}`,
  ack: (job: string) => `/v1/runner/jobs/${job}/ack`,
  complete: (job: string) => `/v1/runner/jobs/${job}/complete`,
  fail: (job: string) => `/v1/runner/jobs/${job}/fail`,
  checkpoints: (job: string) => `/v1/runner/jobs/${job}/checkpoints`,
  checkpointComplete: (job: string, id: string) => `/v1/runner/jobs/${job}/checkpoints/${id}/complete`,
  checkpointDownload: (job: string, id: string) => `/v1/runner/jobs/${job}/checkpoints/${id}/content`,
  artifact: (id: string) => `/v1/runner/artifacts/${id}/content`,
} as const;

/** The part of a zod schema the client uses (kept structural so the runner's zod copy need not be the contract's). */
export interface Schema<T> {
  safeParse(
    data: unknown,
  ):
    | { success: true; data: T }
    | { success: false; error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] } };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Worth trying again later (network down, 5xx, 429). */
    readonly retryable: boolean,
  ) {
    super(`${code}: ${message}`);
    this.name = 'ApiError';
  }
}

export interface RetryPolicy {
  /** Give up after this many attempts (1 = no retry). */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, baseDelayMs: 250, maxDelayMs: 8_000 };
export const NO_RETRY: RetryPolicy = { attempts: 1, baseDelayMs: 0, maxDelayMs: 0 };
/** complete / fail / ack: the job's outcome must arrive, so ride out an outage of a few minutes. */
export const TERMINAL_RETRY: RetryPolicy = { attempts: 60, baseDelayMs: 500, maxDelayMs: 5_000 };

export interface ApiClientOptions {
  baseUrl: string;
  token: string;
  log: Logger;
  /** Per-request timeout, on top of any long-poll wait. */
  timeoutMs?: number;
  retry?: RetryPolicy;
}

interface RequestOptions {
  body?: unknown;
  /** Raw body (checkpoint parts); sent as application/octet-stream. */
  raw?: Uint8Array;
  headers?: Record<string, string>;
  retry?: RetryPolicy;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export function backoffDelay(attempt: number, policy: RetryPolicy): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  // full jitter keeps many runners from retrying in lockstep after an outage
  return Math.round(exp / 2 + (Math.random() * exp) / 2);
}

export class RunnerApi {
  readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly retry: RetryPolicy;

  constructor(private readonly options: ApiClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.retry = options.retry ?? DEFAULT_RETRY;
  }

  /** Registers a runner with an account's registration key (`cgrpo_rk_…`) and returns its token. */
  static async register(
    baseUrl: string,
    registrationKey: string,
    request: RunnerRegisterRequest,
    log: Logger,
  ): Promise<{ runner_id: string; token: string }> {
    const api = new RunnerApi({ baseUrl, token: registrationKey, log });
    return api.call('POST', RUNNER_ROUTES.register, RunnerRegisterResponseSchema, {
      body: RunnerRegisterRequestSchema.parse(request),
    });
  }

  /** Long-polls for a job; null when none arrived within `wait_seconds`. */
  async lease(request: LeaseRequest, signal?: AbortSignal): Promise<Lease | null> {
    const body = LeaseRequestSchema.parse(request);
    const res = await this.send('POST', RUNNER_ROUTES.lease, {
      body,
      signal,
      timeoutMs: this.timeoutMs + body.wait_seconds * 1000,
    });
    if (res.status === 204) return null;
    return parseBody(LeaseSchema, await res.json(), RUNNER_ROUTES.lease);
  }

  heartbeat(job: string, request: HeartbeatRequest) {
    // a heartbeat is repeated by its timer anyway: one quick try, no backoff chain
    return this.call('POST', RUNNER_ROUTES.heartbeat(job), HeartbeatResponseSchema, {
      body: HeartbeatRequestSchema.parse(request),
      retry: { attempts: 2, baseDelayMs: 200, maxDelayMs: 200 },
      timeoutMs: 10_000,
    });
  }

  events(job: string, batch: EventsBatch, retry?: RetryPolicy) {
    return this.call('POST', RUNNER_ROUTES.events(job), BatchResultSchema, {
      body: EventsBatchSchema.parse(batch),
      retry,
    });
  }

  metrics(job: string, batch: MetricsBatch, retry?: RetryPolicy) {
    return this.call('POST', RUNNER_ROUTES.metrics(job), BatchResultSchema, {
      body: MetricsBatchSchema.parse(batch),
      retry,
    });
  }

  async ack(job: string, request: AckJob): Promise<void> {
    await this.send('POST', RUNNER_ROUTES.ack(job), {
      retry: TERMINAL_RETRY,
      body: AckJobSchema.parse(request),
    });
  }

  /** The job's status afterwards: `succeeded`, or `cancelled`/`paused` when such a request was pending. */
  complete(job: string, request: CompleteJob) {
    return this.call('POST', RUNNER_ROUTES.complete(job), LeaseStateSchema, {
      retry: TERMINAL_RETRY,
      body: CompleteJobSchema.parse(request),
    });
  }

  async fail(job: string, request: FailJob): Promise<void> {
    await this.send('POST', RUNNER_ROUTES.fail(job), {
      retry: TERMINAL_RETRY,
      body: FailJobSchema.parse(request),
    });
  }

  checkpointInit(job: string, request: CheckpointInit, retry?: RetryPolicy) {
    return this.call('POST', RUNNER_ROUTES.checkpoints(job), CheckpointInitResponseSchema, {
      retry,
      body: CheckpointInitSchema.parse(request),
    });
  }

  /** PUTs one part to the URL the init answer gave (`{part_number}` filled in). */
  uploadPart(partUrl: string, leaseId: string, partNumber: number, bytes: Uint8Array, retry?: RetryPolicy) {
    const path = partUrl.replace('{part_number}', String(partNumber));
    return this.call('PUT', path, PartUploadResponseSchema, {
      raw: bytes,
      headers: { 'x-lease-id': leaseId },
      retry,
      timeoutMs: 120_000,
    });
  }

  checkpointComplete(job: string, id: string, request: CheckpointComplete, retry?: RetryPolicy) {
    return this.call('POST', RUNNER_ROUTES.checkpointComplete(job, id), CheckpointSchema, {
      retry,
      body: CheckpointCompleteSchema.parse(request),
    });
  }

  /** Raw download (datasets, checkpoints, plugin bundles): a path on the API or an absolute URL. */
  async download(pathOrUrl: string): Promise<Uint8Array> {
    const res = await this.send('GET', pathOrUrl, { timeoutMs: 300_000 });
    return new Uint8Array(await res.arrayBuffer());
  }

  /** Uploads a gzipped JSONL body (a step's rollouts). */
  async rollouts(
    job: string,
    leaseId: string,
    step: number,
    gz: Uint8Array,
    retry?: RetryPolicy,
  ): Promise<void> {
    await this.send('PUT', RUNNER_ROUTES.rollouts(job, step), {
      raw: gz,
      headers: { 'x-lease-id': leaseId },
      retry,
    });
  }

  async call<T>(method: string, path: string, schema: Schema<T>, options: RequestOptions = {}): Promise<T> {
    const res = await this.send(method, path, options);
    return parseBody(schema, await res.json(), path);
  }

  /** One request with retries; resolves with a 2xx response, throws ApiError otherwise. */
  async send(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const policy = options.retry ?? this.retry;
    const url = /^https?:\/\//.test(path) ? path : `${this.baseUrl}${path}`;
    for (let attempt = 1; ; attempt++) {
      let error: ApiError;
      try {
        const res = await fetch(url, {
          method,
          headers: {
            authorization: `Bearer ${this.options.token}`,
            ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...(options.raw ? { 'content-type': 'application/octet-stream' } : {}),
            ...options.headers,
          },
          body: options.raw ?? (options.body !== undefined ? JSON.stringify(options.body) : undefined),
          signal: anySignal(options.signal, AbortSignal.timeout(options.timeoutMs ?? this.timeoutMs)),
        });
        if (res.ok) return res;
        error = await errorFrom(res);
      } catch (e) {
        if (options.signal?.aborted) throw e;
        error = new ApiError(0, 'api_unreachable', `${method} ${url}: ${describe(e)}`, true);
      }
      if (!error.retryable || attempt >= policy.attempts) throw error;
      const delay = backoffDelay(attempt, policy);
      this.options.log.debug('api retry', { method, path, attempt, delay_ms: delay, error: error.message });
      await sleep(delay, options.signal);
    }
  }
}

async function errorFrom(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  let code = `http_${res.status}`;
  let message = text.slice(0, 500) || res.statusText;
  try {
    const parsed = ErrorBodySchema.safeParse(JSON.parse(text));
    if (parsed.success) {
      code = parsed.data.error.code;
      const fields = parsed.data.error.fields.map((f) => `${f.path}: ${f.message}`).join('; ');
      message = parsed.data.error.message + (fields ? ` (${fields})` : '');
    }
  } catch {
    // not JSON: keep the text
  }
  const retryable = res.status >= 500 || res.status === 429 || res.status === 408;
  return new ApiError(res.status, code, message, retryable);
}

function parseBody<T>(schema: Schema<T>, body: unknown, path: string): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new ApiError(
    0,
    'protocol_mismatch',
    `${path}: the API answered with a body the runner does not understand (${issue?.path.map(String).join('.')}: ${issue?.message}); runner and API versions may differ`,
    false,
  );
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as Error & { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message} (${cause.message})` : e.message;
  }
  return String(e);
}

function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal {
  return AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
