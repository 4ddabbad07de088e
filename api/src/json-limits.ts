import type { FieldError } from '@cgrpo/contract';
import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from './env';
import { ApiError, invalid } from './errors';

// Bounds on every JSON request body, checked before a handler sees it and so before anything is
// written: the byte size (413, from Content-Length before the body is read, else while it streams
// in), then the shape of the parsed value (nesting depth, string and array lengths, keys per object)
// and keys that JavaScript objects cannot hold as data (`__proto__`, `constructor`) or that no field
// path can name (""). Each refusal names the field path at fault. The limits are per route group and
// documented in docs/api.md ("Limits").

export interface JsonLimits {
  /** Bytes of the whole body. */
  maxBytes: number;
  /** Nesting of objects and arrays; the body itself is depth 1. */
  maxDepth: number;
  /** Characters of one string value or key. */
  maxStringChars: number;
  /** Items of one array. */
  maxArrayItems: number;
  /** Keys of one object. */
  maxObjectKeys: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** User routes. A job spec is stored as one D1 row (2 MB at most), so specs stay well below that. */
export const USER_JSON_LIMITS: JsonLimits = {
  maxBytes: 256 * KiB,
  maxDepth: 32,
  maxStringChars: 64 * KiB,
  maxArrayItems: 10_000,
  maxObjectKeys: 1_000,
};

/** Per-route byte limits that differ from USER_JSON_LIMITS (method + path pattern). */
const ROUTE_BYTES: { method: string; path: RegExp; maxBytes: number }[] = [
  { method: 'POST', path: /^\/v1\/jobs$/, maxBytes: 1 * MiB },
  // The dry run has its own documented limit (PLUGIN_RUN_LIMITS.maxBodyBytes, 1 MiB).
  { method: 'POST', path: /^\/v1\/plugins\/run$/, maxBytes: 1 * MiB },
];

/** Runner routes carry metric batches, events and rollout records: larger, but still bounded. */
export const RUNNER_JSON_LIMITS: JsonLimits = {
  maxBytes: 16 * MiB,
  maxDepth: 64,
  maxStringChars: 4 * MiB,
  maxArrayItems: 100_000,
  maxObjectKeys: 10_000,
};

/** A published plugin's manifest (a multipart field) and its config_schema. */
export const MANIFEST_LIMITS: JsonLimits = {
  maxBytes: 64 * KiB,
  maxDepth: 32,
  maxStringChars: 4 * KiB,
  maxArrayItems: 1_000,
  maxObjectKeys: 500,
};

export function jsonLimitsFor(method: string, path: string): JsonLimits {
  if (path.startsWith('/v1/runner/')) return RUNNER_JSON_LIMITS;
  const route = ROUTE_BYTES.find((r) => r.method === method && r.path.test(path));
  return route ? { ...USER_JSON_LIMITS, maxBytes: route.maxBytes } : USER_JSON_LIMITS;
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor']);

interface Frame {
  value: unknown;
  depth: number;
  key: string | undefined;
  parent: Frame | undefined;
}

/** `a.b.0.c`, with "" for an empty key; very deep paths keep their first and last segments. */
export function framePath(frame: Frame | undefined, prefix: string, extraKey?: string): string {
  const segments: string[] = [];
  if (extraKey !== undefined) segments.push(extraKey === '' ? '""' : extraKey);
  for (let f = frame; f?.key !== undefined; f = f.parent) segments.push(f.key === '' ? '""' : f.key);
  if (prefix) segments.push(prefix);
  segments.reverse();
  const shown =
    segments.length > 12
      ? [...segments.slice(0, 8), `…(${segments.length - 10} more)`, ...segments.slice(-2)]
      : segments;
  return shown
    .map((s) => (s.length > 64 ? `${s.slice(0, 64)}…` : s))
    .join('.')
    .slice(0, 1000);
}

/**
 * The first way `value` exceeds `limits` (or holds a forbidden key), as a field error whose path
 * starts with `prefix`; undefined when within bounds. Iterative, so any depth is safe to check.
 */
export function checkJsonShape(value: unknown, prefix: string, limits: JsonLimits): FieldError | undefined {
  const stack: Frame[] = [{ value, depth: 1, key: undefined, parent: undefined }];
  while (stack.length > 0) {
    const frame = stack.pop() as Frame;
    const v = frame.value;
    if (typeof v === 'string') {
      if (v.length > limits.maxStringChars)
        return {
          path: framePath(frame, prefix),
          message: `string of ${v.length} characters; at most ${limits.maxStringChars} allowed here`,
        };
      continue;
    }
    if (typeof v !== 'object' || v === null) continue;
    if (frame.depth > limits.maxDepth)
      return {
        path: framePath(frame, prefix),
        message: `nested deeper than ${limits.maxDepth} levels of objects and arrays; flatten it`,
      };
    if (Array.isArray(v)) {
      if (v.length > limits.maxArrayItems)
        return {
          path: framePath(frame, prefix),
          message: `array of ${v.length} items; at most ${limits.maxArrayItems} allowed here`,
        };
      for (let i = v.length - 1; i >= 0; i--)
        stack.push({ value: v[i], depth: frame.depth + 1, key: String(i), parent: frame });
      continue;
    }
    const keys = Object.keys(v);
    if (keys.length > limits.maxObjectKeys)
      return {
        path: framePath(frame, prefix),
        message: `object with ${keys.length} keys; at most ${limits.maxObjectKeys} allowed here`,
      };
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i] as string;
      if (FORBIDDEN_KEYS.has(key))
        return {
          path: framePath(frame, prefix, key),
          message: `the key "${key}" is not allowed (it cannot be stored as data); rename it`,
        };
      if (key === '')
        return { path: framePath(frame, prefix, key), message: 'empty keys are not allowed; name the field' };
      if (key.length > limits.maxStringChars)
        return {
          path: framePath(frame, prefix, key),
          message: `key of ${key.length} characters; at most ${limits.maxStringChars} allowed`,
        };
      stack.push({
        value: (v as Record<string, unknown>)[key],
        depth: frame.depth + 1,
        key,
        parent: frame,
      });
    }
  }
  return undefined;
}

export const tooLarge = (maxBytes: number, what = 'the request body') =>
  new ApiError(413, 'too_large', `${what} may be at most ${maxBytes} bytes; send less`, [
    { path: 'body', message: `larger than ${maxBytes} bytes` },
  ]);

/** Reads a body stream, refusing (413) as soon as more than maxBytes have arrived. */
export async function readBounded(
  body: ReadableStream<Uint8Array> | null,
  maxBytes: number,
): Promise<Uint8Array> {
  if (!body) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge(maxBytes);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

/** Parses JSON text and checks its shape; throws an ApiError naming the path. */
export function parseBoundedJson(text: string, prefix: string, limits: JsonLimits): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const detail = error instanceof Error ? error.message.slice(0, 200) : 'syntax error';
    throw invalid(`${prefix || 'the request body'} is not valid JSON: ${detail}`, [
      { path: prefix || 'body', message: 'not valid JSON' },
    ]);
  }
  const problem = checkJsonShape(value, prefix, limits);
  if (problem)
    throw invalid(`${problem.path || '(root)'}: ${problem.message}`, [
      { ...problem, path: problem.path || prefix || 'body' },
    ]);
  return value;
}

const JSON_MEDIA = /^application\/([\w.-]+\+)?json$/i;
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Middleware: every JSON body is size-checked, parsed once and shape-checked here; the parsed value
 * is handed to the route's validator through Hono's body cache, so no handler re-reads the bytes.
 */
export const jsonBodyLimits: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (!BODY_METHODS.has(c.req.method)) return next();
  const mediaType = (c.req.header('content-type') ?? '').split(';')[0]?.trim() ?? '';
  if (!JSON_MEDIA.test(mediaType)) return next();
  const limits = jsonLimitsFor(c.req.method, c.req.path);
  const declared = Number(c.req.header('content-length') ?? Number.NaN);
  if (Number.isFinite(declared) && declared > limits.maxBytes) throw tooLarge(limits.maxBytes);
  const bytes = await readBounded(c.req.raw.body, limits.maxBytes);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw invalid('the request body is not valid UTF-8', [{ path: 'body', message: 'not valid UTF-8' }]);
  }
  const value = text.trim() === '' ? undefined : parseBoundedJson(text, '', limits);
  // Hono keeps body promises per reader kind; the route's validator then reads the parsed value.
  const cache = c.req.bodyCache as Record<string, Promise<unknown>>;
  if (value !== undefined) cache.json = Promise.resolve(value);
  else cache.text = Promise.resolve(text);
  return next();
};
