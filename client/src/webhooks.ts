// Standard Webhooks (https://www.standardwebhooks.com) signing and verification for cgrpo's
// job notifications. WebCrypto only, so the same code runs in Node, Deno, Bun, browsers and Workers.
// Proven byte-for-byte against the `standardwebhooks` reference package in client/test/webhooks.test.ts.

/** Event types cgrpo sends. `webhook.test` comes from `POST /v1/webhooks/endpoints/:id/test`. */
export const WEBHOOK_EVENT_TYPES = [
  'job.queued',
  'job.started',
  'job.checkpoint',
  'job.evaluated',
  'job.succeeded',
  'job.failed',
  'job.cancelled',
  'job.budget_reached',
  'job.alarm',
  'job.metrics_digest',
  'checkpoint.created',
  'webhook.test',
  'webhook.endpoint.disabled',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** The JSON body of every delivery: `{type, timestamp, data}` as in the Standard Webhooks spec. */
export interface WebhookEvent<D = Record<string, unknown>> {
  type: WebhookEventType | (string & {});
  /** ISO 8601 time of the event (not of the attempt: that is the `webhook-timestamp` header). */
  timestamp: string;
  data: D;
}

export type WebhookVerificationErrorCode =
  | 'invalid_secret'
  | 'missing_headers'
  | 'invalid_timestamp'
  | 'timestamp_too_old'
  | 'timestamp_too_new'
  | 'no_matching_signature'
  | 'invalid_json';

/** Thrown by `verifyWebhook`; `code` says which check failed, so a receiver can log it and answer 400/401. */
export class WebhookVerificationError extends Error {
  override readonly name = 'WebhookVerificationError';
  constructor(
    readonly code: WebhookVerificationErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface VerifyWebhookOptions {
  /** How far `webhook-timestamp` may be from `now`, either way (default 300 s, as the spec advises). */
  toleranceSeconds?: number;
  /** The receiver's clock (default `Date.now()`); a Date or milliseconds since the epoch. */
  now?: Date | number;
}

/** Anything that carries the three `webhook-*` headers: a fetch `Headers`, Node's `IncomingHttpHeaders`, a plain object. */
export type WebhookHeaderSource =
  | { get(name: string): string | null }
  | Record<string, string | string[] | undefined>;

const SECRET_PREFIX = 'whsec_';
const encoder = new TextEncoder();
type HmacKey = ReturnType<typeof crypto.subtle.importKey>;
const keyCache = new Map<string, HmacKey>();

function secretKey(secret: string): HmacKey {
  let key = keyCache.get(secret);
  if (!key) {
    const base64 = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
    let raw: Uint8Array;
    try {
      raw = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    } catch {
      throw new WebhookVerificationError(
        'invalid_secret',
        'the secret must be "whsec_" followed by base64 (copy it exactly as the API returned it)',
      );
    }
    if (raw.length === 0) throw new WebhookVerificationError('invalid_secret', 'the secret is empty');
    key = crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    if (keyCache.size > 64) keyCache.clear();
    keyCache.set(secret, key);
  }
  return key;
}

function toBytes(body: string | Uint8Array): Uint8Array {
  return typeof body === 'string' ? encoder.encode(body) : body;
}

function base64(bytes: ArrayBuffer): string {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s);
}

/**
 * The `webhook-signature` value for one secret: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
 * Join several with a space to sign with more than one secret (during a rotation).
 */
export async function signWebhook(
  secret: string,
  id: string,
  timestampSeconds: number,
  rawBody: string | Uint8Array,
): Promise<string> {
  if (!Number.isSafeInteger(timestampSeconds) || timestampSeconds < 0) {
    // A fractional, negative or unsafe timestamp would sign a string no receiver can reproduce.
    throw new WebhookVerificationError(
      'invalid_timestamp',
      `timestampSeconds must be a non-negative integer (seconds since the epoch), got ${timestampSeconds}`,
    );
  }
  const body = toBytes(rawBody);
  const prefix = encoder.encode(`${id}.${timestampSeconds}.`);
  const content = new Uint8Array(prefix.length + body.length);
  content.set(prefix, 0);
  content.set(body, prefix.length);
  const mac = await crypto.subtle.sign('HMAC', await secretKey(secret), content);
  return `v1,${base64(mac)}`;
}

function header(headers: WebhookHeaderSource, name: string): string | undefined {
  if (typeof headers.get === 'function')
    return (headers as { get(n: string): string | null }).get(name) ?? undefined;
  const record = headers as Record<string, string | string[] | undefined>;
  for (const key of Object.keys(record)) {
    if (key.toLowerCase() !== name) continue;
    const value = record[key];
    return Array.isArray(value) ? value.join(' ') : value;
  }
  return undefined;
}

function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * Checks a delivery and returns its parsed body. Pass the body exactly as received (bytes or
 * string, before any JSON parsing). Throws `WebhookVerificationError` when the headers are missing,
 * the timestamp is outside the tolerance, or no `v1` signature matches the secret. A correctly
 * signed empty body is valid (the signature covers `id.timestamp.`; cgrpo never sends one, some
 * relays do) and resolves to `{type: '', timestamp: <webhook-timestamp>, data: {}}`.
 * Deduplicate on the `webhook-id` header: it is identical on every retry of one event.
 */
export async function verifyWebhook<D = Record<string, unknown>>(
  secret: string,
  headers: WebhookHeaderSource,
  rawBody: string | Uint8Array,
  options: VerifyWebhookOptions = {},
): Promise<WebhookEvent<D>> {
  const id = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp');
  const signatures = header(headers, 'webhook-signature');
  if (!id || !timestamp || !signatures) {
    throw new WebhookVerificationError(
      'missing_headers',
      'webhook-id, webhook-timestamp and webhook-signature headers are all required',
    );
  }
  if (!/^\d+$/.test(timestamp)) {
    throw new WebhookVerificationError(
      'invalid_timestamp',
      `webhook-timestamp must be integer seconds, got "${timestamp}"`,
    );
  }
  const tolerance = options.toleranceSeconds ?? 300;
  const nowMs = options.now === undefined ? Date.now() : Number(options.now);
  const skew = Math.floor(nowMs / 1000) - Number(timestamp);
  if (skew > tolerance) {
    throw new WebhookVerificationError(
      'timestamp_too_old',
      `webhook-timestamp is ${skew} s old (tolerance ${tolerance} s)`,
    );
  }
  if (-skew > tolerance) {
    throw new WebhookVerificationError(
      'timestamp_too_new',
      `webhook-timestamp is ${-skew} s in the future (tolerance ${tolerance} s); check the receiver's clock`,
    );
  }
  const body = toBytes(rawBody);
  const expected = (await signWebhook(secret, id, Number(timestamp), body)).slice(3);
  const matches = signatures
    .split(' ')
    .map((entry) => entry.split(','))
    .some(
      ([version, signature]) =>
        version === 'v1' && signature !== undefined && timingSafeEqual(signature, expected),
    );
  if (!matches) {
    throw new WebhookVerificationError(
      'no_matching_signature',
      'no v1 signature matches this secret (was the body changed, e.g. re-serialised JSON, or the secret rotated?)',
    );
  }
  const text = new TextDecoder().decode(body);
  if (text.trim() === '') {
    // Nothing to parse: the event is what the signed headers say, with no type and no data.
    return { type: '', timestamp: new Date(Number(timestamp) * 1000).toISOString(), data: {} as D };
  }
  try {
    return JSON.parse(text) as WebhookEvent<D>;
  } catch {
    throw new WebhookVerificationError('invalid_json', 'the signed body is not JSON');
  }
}
