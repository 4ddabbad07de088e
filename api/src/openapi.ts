import { ErrorBodySchema } from '@cgrpo/contract';
import { OpenAPIHono } from '@hono/zod-openapi';
import { z } from 'zod';
import type { AppEnv } from './env';
import { validationHook } from './errors';

// Shared pieces of route declarations, so each router reads as its HTTP contract.

export function router() {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
}

export function jsonBody<T extends z.ZodType>(schema: T, description?: string) {
  return { required: true, description, content: { 'application/json': { schema } } };
}

export function json<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { 'application/json': { schema } } };
}

/** A raw byte body (uploads): streamed by the handler, not parsed by a validator. */
export function binaryBody(description: string) {
  return {
    required: true,
    description,
    content: { 'application/octet-stream': { schema: z.string().meta({ format: 'binary' }) } },
  };
}

export const binaryResponse = (description: string) => ({
  description,
  content: { 'application/octet-stream': { schema: z.string().meta({ format: 'binary' }) } },
});

const errorResponse = (description: string) => json(ErrorBodySchema, description);

/** The error responses every authenticated route can give. */
export const errors = {
  400: errorResponse('Invalid request: see error.fields for each field at fault'),
  401: errorResponse('Missing, invalid or revoked key'),
  403: errorResponse('The key is valid but not for this route'),
  404: errorResponse('Not found (or owned by another account)'),
} as const;
export const conflictError = { 409: errorResponse('Conflict with the current state') } as const;
/** A key's spend limit is used up (docs/budgets-and-alarms.md). */
export const spendLimitError = {
  402: errorResponse("The API key's spend limit does not leave room: error.message says what to do"),
} as const;

export const bearerSecurity = [{ bearer: [] as string[] }];

// ---- the served document ------------------------------------------------------------------------

type JsonObject = Record<string, unknown>;
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'] as const;
/** Routes that take no API key (health, the document itself); bootstrap takes one outside development. */
const OPEN_OPERATIONS = new Set(['get /v1/health', 'get /v1/openapi.json']);

const errorRef = { $ref: '#/components/schemas/ErrorBody' };
const errorContent = (description: string) => ({
  description,
  content: { 'application/json': { schema: errorRef } },
});

/**
 * Completes the generated document so that it validates (OpenAPI 3.1 schema) and lints clean
 * (@redocly/cli recommended): an operationId on every operation, path parameters required,
 * security declared everywhere (root: bearer; open routes: none; bootstrap: optional), one shared
 * ErrorBody schema for every error response, and the 413/415/500 answers the middleware gives.
 */
export function finishOpenApiDocument(doc: JsonObject, errorBodySchema: JsonObject): JsonObject {
  const components = (doc.components ?? {}) as JsonObject;
  components.schemas = { ...((components.schemas ?? {}) as JsonObject), ErrorBody: errorBodySchema };
  doc.components = components;
  doc.security = bearerSecurity;
  const info = doc.info as JsonObject;
  info.license = { name: 'Apache-2.0', identifier: 'Apache-2.0' };
  const paths = (doc.paths ?? {}) as Record<string, JsonObject>;
  const used = new Set<string>();
  for (const [path, item] of Object.entries(paths)) {
    for (const method of METHODS) {
      const op = item[method] as JsonObject | undefined;
      if (!op) continue;
      op.operationId ??= uniqueId(operationIdOf(method, path), used);
      for (const param of (op.parameters ?? []) as JsonObject[])
        if (param.in === 'path') param.required = true;
      const key = `${method} ${path}`;
      if (OPEN_OPERATIONS.has(key)) op.security = [];
      else if (key === 'post /v1/bootstrap') op.security = [{}, { bearer: [] }];
      else op.security ??= bearerSecurity;
      const responses = (op.responses ?? {}) as Record<string, JsonObject>;
      for (const [status, response] of Object.entries(responses)) {
        if (Number(status) >= 400) responses[status] = errorContent(String(response.description ?? 'Error'));
      }
      const body = op.requestBody as JsonObject | undefined;
      if (body) {
        responses['413'] ??= errorContent('Body larger than this route accepts (see docs/api.md, "Limits")');
        const types = Object.keys((body.content ?? {}) as JsonObject);
        if (types.some((t) => t.includes('json') || t.includes('multipart')))
          responses['415'] ??= errorContent('Body sent with a media type this route does not take');
      }
      responses['500'] ??= errorContent('Internal error: retry, and report the request id if it persists');
      op.responses = responses;
    }
  }
  // Outgoing webhook events (OpenAPI 3.1 `webhooks`): named by their event.
  for (const [name, item] of Object.entries((doc.webhooks ?? {}) as Record<string, JsonObject>)) {
    for (const method of METHODS) {
      const op = item[method] as JsonObject | undefined;
      if (op) op.operationId ??= uniqueId(operationIdOf('webhook', `/${name}`), used);
    }
  }
  return doc;
}

function operationIdOf(method: string, path: string): string {
  const words = path
    .replace(/^\/v1\//, '')
    .split('/')
    .filter(Boolean)
    .map((segment) => {
      const param = /^\{(.+)\}$/.exec(segment);
      const word = (param ? `by-${param[1]}` : segment).replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string) =>
        c ? c.toUpperCase() : '',
      );
      return word.charAt(0).toUpperCase() + word.slice(1);
    });
  return `${method}${words.join('')}`;
}

function uniqueId(id: string, used: Set<string>): string {
  let candidate = id;
  for (let i = 2; used.has(candidate); i++) candidate = `${id}${i}`;
  used.add(candidate);
  return candidate;
}
