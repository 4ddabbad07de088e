// A typed client for the cgrpo HTTP API (the user routes under /v1). Plain fetch, no runtime
// dependencies, so it runs in Node 20, browsers and Workers. Every route it calls is listed in
// CLIENT_ROUTES, and client/test/cli.e2e.test.ts checks that list against the API's OpenAPI document.
// JOB_STATUSES repeats the contract's list (no zod here); client/test/contract-sync.test.ts keeps them equal.

export const JOB_STATUSES = [
  'queued',
  'running',
  'paused',
  'cancelling',
  'succeeded',
  'failed',
  'cancelled',
] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const TERMINAL_JOB_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];

export interface JobSummary {
  id: string;
  name: string;
  status: JobStatus;
  algorithm: string;
  attempt: number;
  current_step: number | null;
  total_steps: number;
  error: { code: string; message: string } | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  finished_at: string | null;
  [key: string]: unknown;
}
export interface Job extends JobSummary {
  spec: Record<string, unknown>;
}
export interface JobEvent {
  id: number;
  job_id: string;
  type: string;
  data: Record<string, unknown>;
  attempt: number;
  created_at: string;
}
export interface MetricPoint {
  step: number;
  attempt: number;
  values: Record<string, number | null>;
  time: string;
}
export interface Checkpoint {
  id: string;
  job_id: string;
  step: number;
  kind: string;
  final: boolean;
  status: string;
  size: number | null;
  sha256: string | null;
  created_at: string;
}
export interface Artifact {
  id: string;
  name: string;
  kind: string;
  status: string;
  size: number | null;
  sha256: string | null;
  content_type: string;
  rows: number | null;
  fields: Record<string, string> | null;
  created_at: string;
}
export interface RolloutRecord {
  kind?: string;
  prompt?: string;
  response?: string;
  reward?: number | null;
  critique?: string | null;
  [key: string]: unknown;
}
export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}
export type Json = Record<string, unknown>;

/** [method, OpenAPI path] of every route this client calls. */
export const CLIENT_ROUTES = [
  ['get', '/v1/account'],
  ['post', '/v1/jobs'],
  ['get', '/v1/jobs'],
  ['get', '/v1/jobs/{id}'],
  ['post', '/v1/jobs/{id}/cancel'],
  ['post', '/v1/jobs/{id}/pause'],
  ['post', '/v1/jobs/{id}/resume'],
  ['get', '/v1/jobs/{id}/events'],
  ['get', '/v1/jobs/{id}/stream'],
  ['get', '/v1/jobs/{id}/metrics'],
  ['get', '/v1/jobs/{id}/checkpoints'],
  ['get', '/v1/jobs/{id}/checkpoints/{checkpoint_id}/content'],
  ['get', '/v1/jobs/{id}/rollouts'],
  ['post', '/v1/artifacts'],
  ['post', '/v1/artifacts/uploads'],
  ['put', '/v1/artifacts/{id}/parts/{part_number}'],
  ['post', '/v1/artifacts/{id}/complete'],
  ['get', '/v1/artifacts'],
  ['get', '/v1/runners'],
  ['get', '/v1/plugins'],
  ['get', '/v1/webhooks/endpoints'],
  ['post', '/v1/webhooks/endpoints'],
  ['get', '/v1/webhooks/endpoints/{id}/deliveries'],
  ['post', '/v1/webhooks/endpoints/{id}/test'],
  ['post', '/v1/webhooks/deliveries/{id}/redeliver'],
] as const;

/** An error from the API (its ErrorBody) or from reaching it, with what to do next. */
export class CgrpoApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fields: { path: string; message: string }[] = [],
    readonly requestId?: string,
  ) {
    super(message);
    this.name = 'CgrpoApiError';
  }
}

const HINTS: Record<number, string> = {
  401: 'the API key was refused: run `cgrpo login` again or set CGRPO_API_KEY',
  403: 'this key may not do that: use an admin key of the account',
  404: 'check the id (`cgrpo jobs list` shows your jobs)',
};

export interface ClientOptions {
  /** The API's base URL, e.g. http://127.0.0.1:8787 (with or without /v1). */
  url: string;
  /** An API key (cgrpo_sk_…). */
  apiKey: string;
  fetch?: typeof fetch;
}

export class CgrpoClient {
  readonly base: string;
  private readonly key: string;
  private readonly doFetch: typeof fetch;

  constructor(opts: ClientOptions) {
    const trimmed = opts.url.replace(/\/+$/, '');
    this.base = trimmed.endsWith('/v1') ? trimmed.slice(0, -3) : trimmed;
    this.key = opts.apiKey;
    this.doFetch = opts.fetch ?? ((input, init) => fetch(input, init));
  }

  /** Sends a request; a non-2xx answer throws CgrpoApiError. Returns the raw Response. */
  async raw(method: string, path: string, init: RequestInit = {}): Promise<Response> {
    let res: Response;
    try {
      res = await this.doFetch(`${this.base}/v1${path}`, {
        ...init,
        method,
        headers: { authorization: `Bearer ${this.key}`, ...((init.headers as Record<string, string>) ?? {}) },
      });
    } catch (error) {
      throw new CgrpoApiError(
        0,
        'api_unreachable',
        `could not reach ${this.base}: ${(error as Error).message}; is the API running (\`npm start\`) and the URL right (\`cgrpo login --api URL\`)?`,
      );
    }
    if (res.ok) return res;
    const text = await res.text();
    let body: { error?: { code?: string; message?: string; fields?: []; request_id?: string } } = {};
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON
    }
    const e = body.error;
    const hint = HINTS[res.status];
    const message =
      e?.message ?? `${res.status} from ${method.toUpperCase()} /v1${path}: ${text.slice(0, 300)}`;
    throw new CgrpoApiError(
      res.status,
      e?.code ?? 'http_error',
      hint && !message.includes('cgrpo login') ? `${message} (${hint})` : message,
      e?.fields ?? [],
      e?.request_id,
    );
  }

  async json<T>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<T> {
    const res = await this.raw(method, path, {
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return (await res.json()) as T;
  }

  account = () => this.json<Json>('get', '/account');

  createJob = (spec: Json, idempotencyKey?: string) =>
    this.json<Job>('post', '/jobs', spec, idempotencyKey ? { 'idempotency-key': idempotencyKey } : {});
  listJobs = (q: { status?: string; limit?: number; cursor?: string } = {}) =>
    this.json<Page<JobSummary>>('get', `/jobs${query(q)}`);
  getJob = (id: string) => this.json<Job>('get', `/jobs/${enc(id)}`);
  controlJob = (id: string, action: 'cancel' | 'pause' | 'resume') =>
    this.json<Job>('post', `/jobs/${enc(id)}/${action}`);
  events = (id: string, cursor?: string, limit = 100) =>
    this.json<{ data: JobEvent[]; next_cursor: string }>(
      'get',
      `/jobs/${enc(id)}/events${query({ cursor, limit })}`,
    );
  metrics = (id: string, q: { names?: string[]; from_step?: number; limit?: number } = {}) =>
    this.json<{ data: MetricPoint[]; next_from_step: number | null }>(
      'get',
      `/jobs/${enc(id)}/metrics${query({ ...q, names: q.names?.join(',') })}`,
    );
  /** Every metric point of a job (follows next_from_step). */
  async allMetrics(id: string, names?: string[]): Promise<MetricPoint[]> {
    const out: MetricPoint[] = [];
    let from: number | null = 0;
    while (from !== null) {
      const page: { data: MetricPoint[]; next_from_step: number | null } = await this.metrics(id, {
        names,
        from_step: from,
        limit: 1000,
      });
      out.push(...page.data);
      from = page.next_from_step;
    }
    return out;
  }
  checkpoints = (id: string) => this.json<{ data: Checkpoint[] }>('get', `/jobs/${enc(id)}/checkpoints`);
  checkpointContent = (id: string, checkpointId: string) =>
    this.raw('get', `/jobs/${enc(id)}/checkpoints/${enc(checkpointId)}/content`);
  rolloutSteps = (id: string) => this.json<{ steps: unknown[] }>('get', `/jobs/${enc(id)}/rollouts`);
  rollouts = (
    id: string,
    q: { step: number; kind?: string; min_reward?: number; max_reward?: number; limit?: number },
  ) => this.json<{ step: number; data: RolloutRecord[] }>('get', `/jobs/${enc(id)}/rollouts${query(q)}`);

  /** Server-Sent Events of a job, resumed from `cursor`; ends when the job finishes. */
  async *stream(id: string, cursor?: string, signal?: AbortSignal): AsyncGenerator<JobEvent> {
    let after = cursor;
    let failures = 0;
    for (;;) {
      let gotAny = false;
      try {
        const res = await this.raw(
          'get',
          `/jobs/${enc(id)}/stream${query({ cursor: after, poll_ms: 500 })}`,
          {
            headers: { accept: 'text/event-stream' },
            signal,
          },
        );
        for await (const msg of parseSse(res)) {
          if (!msg.data) continue;
          const event = JSON.parse(msg.data) as JobEvent;
          after = String(event.id);
          gotAny = true;
          failures = 0;
          yield event;
        }
      } catch (error) {
        // A dropped connection (proxy, restart, undici's `terminated`): poll the events route
        // once from the last event id, then reconnect.
        if (signal?.aborted || (error instanceof CgrpoApiError && error.status >= 400 && error.status < 500))
          throw error;
        if (typeof process !== 'undefined' && process.env?.CGRPO_DEBUG)
          console.error(`stream of ${id} dropped: ${String(error)}; resuming from event ${after ?? 0}`);
        if (++failures > 30) throw error;
        await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** failures)));
      }
      // The stream closes when the job ends, or after 5 minutes: reconnect unless the job is over.
      const job = await this.getJob(id);
      const rest = await this.events(id, after, 1000);
      for (const e of rest.data) {
        after = String(e.id);
        gotAny = true;
        yield e;
      }
      if (gotAny) failures = 0;
      if (TERMINAL_JOB_STATUSES.includes(job.status) && rest.data.length < 1000) return;
    }
  }

  uploadArtifact = (
    body: ReadableStream<Uint8Array> | Uint8Array | string,
    size: number,
    q: {
      name: string;
      kind?: string;
      prompt_field?: string;
      reference_field?: string;
      solution_field?: string;
    },
    contentType = 'application/octet-stream',
  ) =>
    this.raw('post', `/artifacts${query(q)}`, {
      headers: { 'content-type': contentType, 'content-length': String(size) },
      body,
      // Node's fetch needs this for streamed bodies.
      ...({ duplex: 'half' } as object),
    }).then((r) => r.json() as Promise<Artifact>);
  startMultipart = (body: {
    name: string;
    kind: string;
    content_type: string;
    fields?: Record<string, string>;
  }) =>
    this.json<{ artifact: Artifact; part_url: string; complete_url: string; min_part_size: number }>(
      'post',
      '/artifacts/uploads',
      body,
    );
  uploadPart = (id: string, part: number, bytes: Uint8Array) =>
    this.raw('put', `/artifacts/${enc(id)}/parts/${part}`, {
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) },
      body: bytes,
    }).then((r) => r.json() as Promise<{ part_number: number; etag: string }>);
  completeMultipart = (id: string, parts: { part_number: number; etag: string }[], sha256?: string) =>
    this.json<Artifact>('post', `/artifacts/${enc(id)}/complete`, { parts, ...(sha256 ? { sha256 } : {}) });
  listArtifacts = (kind?: string) => this.json<Page<Artifact>>('get', `/artifacts${query({ kind })}`);

  runners = () => this.json<{ data: Json[] }>('get', '/runners');
  plugins = () => this.json<{ data: Json[] }>('get', '/plugins');

  webhookEndpoints = () => this.json<Page<Json>>('get', '/webhooks/endpoints');
  createWebhookEndpoint = (body: { url: string; event_types?: string[]; description?: string }) =>
    this.json<Json>('post', '/webhooks/endpoints', body);
  deliveries = (endpointId: string) =>
    this.json<Page<Json>>('get', `/webhooks/endpoints/${enc(endpointId)}/deliveries`);
  testWebhook = (endpointId: string) =>
    this.json<Json>('post', `/webhooks/endpoints/${enc(endpointId)}/test`, {});
  redeliver = (deliveryId: string) =>
    this.json<Json>('post', `/webhooks/deliveries/${enc(deliveryId)}/redeliver`);
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

function query(q: Record<string, string | number | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

/** Minimal SSE parser over a fetch Response (event/id/data fields; comments ignored). */
export async function* parseSse(
  res: Response,
): AsyncGenerator<{ id?: string; event?: string; data: string }> {
  if (!res.body) return;
  const decoder = new TextDecoder();
  let buf = '';
  let msg: { id?: string; event?: string; data: string } = { data: '' };
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (line === '') {
        if (msg.data || msg.event) yield msg;
        msg = { data: '' };
      } else if (!line.startsWith(':')) {
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'data') msg.data = msg.data ? `${msg.data}\n${value}` : value;
        else if (field === 'id') msg.id = value;
        else if (field === 'event') msg.event = value;
      }
      nl = buf.indexOf('\n');
    }
  }
}
