import type { ErrorBody, FieldError } from '@cgrpo/contract';
import { fieldErrorsFromZod } from '@cgrpo/contract';
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { z } from 'zod';
import type { AppEnv } from './env';

/** An error a client can act on: an HTTP status, a stable code, a message and the fields at fault. */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly fields: FieldError[] = [],
  ) {
    super(message);
  }
}

export const notFound = (what: string) => new ApiError(404, 'not_found', `${what} not found`);
export const conflict = (code: string, message: string) => new ApiError(409, code, message);
export const invalid = (message: string, fields: FieldError[] = []) =>
  new ApiError(400, 'invalid_request', message, fields);

/** An error body stays small whatever the request held: at most this many fields, each clipped. */
export const ERROR_BODY_LIMITS = { maxFields: 20, maxMessageChars: 1000, maxFieldChars: 300 } as const;

const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max)}… (clipped)` : text);

export function errorBody(c: Context<AppEnv>, error: ApiError): ErrorBody {
  const { maxFields, maxMessageChars, maxFieldChars } = ERROR_BODY_LIMITS;
  const fields = error.fields
    .slice(0, maxFields)
    .map((f) => ({ path: clip(f.path, maxFieldChars), message: clip(f.message, maxFieldChars) }));
  const hidden = error.fields.length - fields.length;
  const message =
    clip(error.message, maxMessageChars) + (hidden > 0 ? ` (${hidden} more field errors not shown)` : '');
  return { error: { code: error.code, message, fields, request_id: c.get('requestId') } };
}

/** app.onError: ApiErrors become their body; anything else is a 500 with no internals (logged with the request id). */
export function handleError(err: Error, c: Context<AppEnv>) {
  if (err instanceof ApiError) return c.json(errorBody(c, err), err.status);
  console.error(`request ${c.get('requestId') ?? '?'} failed:`, err);
  const internal = new ApiError(
    500,
    'internal',
    'internal error; retry, and report the request id if it persists',
  );
  return c.json(errorBody(c, internal), 500);
}

/** OpenAPIHono's defaultHook: a request that fails its zod schema becomes a 400 with every field path. */
export function validationHook(
  result: { success: true } | { success: false; error: z.ZodError; target?: string },
  c: Context<AppEnv>,
) {
  if (result.success) return;
  const target = 'target' in result ? result.target : undefined;
  const where = target === 'query' ? 'query parameters' : target === 'param' ? 'path' : 'request body';
  // A problem with the whole body (not an object, …) is named `body`, never an empty path.
  const fields = fieldErrorsFromZod(result.error, target === 'query' || target === 'param' ? target : '').map(
    (f) => (f.path === '' ? { ...f, path: 'body' } : f),
  );
  const error = invalid(`the ${where} is invalid: ${describeFields(fields)}`, fields);
  return c.json(errorBody(c, error), 400);
}

export function describeFields(fields: FieldError[]): string {
  const shown = fields.slice(0, 3).map((f) => `${f.path || '(root)'}: ${f.message}`);
  return shown.join('; ') + (fields.length > 3 ? `; and ${fields.length - 3} more` : '');
}
