// One HTTP attempt of one delivery. Success is a 2xx and nothing else: redirects are never
// followed (a redirect could point anywhere, including our own network) and count as failures,
// like timeouts and connection errors. Only the first 1 KB of the response body is kept.

import { parseRetryAfter } from './schedule';
import { signatureHeader } from './signing';

export const ATTEMPT_TIMEOUT_MS = 15_000;
export const RESPONSE_BODY_LIMIT_BYTES = 1024;
export const USER_AGENT = 'cgrpo-webhooks/1 (+https://www.standardwebhooks.com)';

export interface AttemptRequest {
  url: string;
  /** `webhook-id`: the event's id, identical on every retry. */
  eventId: string;
  body: string;
  /** Live secrets; more than one during a rotation. */
  secrets: readonly string[];
  /** `webhook-timestamp`, set per attempt. */
  timestampSeconds: number;
}

export interface AttemptResult {
  ok: boolean;
  statusCode: number | null;
  latencyMs: number;
  /** First 1 KB of the response body (UTF-8, possibly cut mid-character). */
  responseBody: string;
  /** Connection error, timeout or "redirect not followed"; null when the endpoint answered normally. */
  error: string | null;
  /** From `Retry-After` on a 429 or 503, in seconds. */
  retryAfterSeconds: number | null;
}

async function readPrefix(body: ReadableStream<Uint8Array> | null, limit: number): Promise<string> {
  if (!body) return '';
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < limit) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const all = new Uint8Array(Math.min(size, limit));
  let offset = 0;
  for (const chunk of chunks) {
    const part = chunk.subarray(0, all.length - offset);
    all.set(part, offset);
    offset += part.length;
    if (offset >= all.length) break;
  }
  return new TextDecoder().decode(all);
}

export async function attemptDelivery(
  req: AttemptRequest,
  options: { timeoutMs?: number; now?: () => number } = {},
): Promise<AttemptResult> {
  const now = options.now ?? Date.now;
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  try {
    const res = await fetch(req.url, {
      method: 'POST',
      redirect: 'manual',
      signal: AbortSignal.timeout(options.timeoutMs ?? ATTEMPT_TIMEOUT_MS),
      headers: {
        'content-type': 'application/json',
        'user-agent': USER_AGENT,
        'webhook-id': req.eventId,
        'webhook-timestamp': String(req.timestampSeconds),
        'webhook-signature': await signatureHeader(req.secrets, req.eventId, req.timestampSeconds, req.body),
      },
      body: req.body,
    });
    const responseBody = await readPrefix(res.body, RESPONSE_BODY_LIMIT_BYTES);
    const ok = res.status >= 200 && res.status < 300;
    const redirected = res.status >= 300 && res.status < 400;
    return {
      ok,
      statusCode: res.status,
      latencyMs: elapsed(),
      responseBody,
      error: redirected ? `redirect to ${res.headers.get('location') ?? '(no location)'} not followed` : null,
      retryAfterSeconds:
        res.status === 429 || res.status === 503
          ? parseRetryAfter(res.headers.get('retry-after'), now())
          : null,
    };
  } catch (error) {
    const e = error as Error;
    const timedOut = e.name === 'TimeoutError' || e.name === 'AbortError';
    return {
      ok: false,
      statusCode: null,
      latencyMs: elapsed(),
      responseBody: '',
      error: timedOut
        ? `no response within ${(options.timeoutMs ?? ATTEMPT_TIMEOUT_MS) / 1000} s`
        : `connection failed: ${e.message}`,
      retryAfterSeconds: null,
    };
  }
}
