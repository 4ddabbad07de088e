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

export const bearerSecurity = [{ bearer: [] as string[] }];
