import { ErrorBodySchema } from '@cgrpo/contract';
import { OpenAPIHono } from '@hono/zod-openapi';
import { drizzle } from 'drizzle-orm/d1';
import { HTTPException } from 'hono/http-exception';
import { z } from 'zod';
import { requireUser } from './auth';
import * as schema from './db/schema';
import { DOCS_PAGE } from './docs-page';
import type { AppEnv, Env } from './env';
import { ApiError, errorBody, handleError, validationHook } from './errors';
import { newId } from './ids';
import { jsonBodyLimits } from './json-limits';
import { finishOpenApiDocument } from './openapi';
import { handleQueueBatch } from './queue';
import { account } from './routes/account';
import { artifactsRouter } from './routes/artifacts';
import { bootstrap } from './routes/bootstrap';
import { budgetsRouter } from './routes/budgets';
import { jobsRouter } from './routes/jobs';
import { openaiRouter } from './routes/openai';
import { pluginRunRouter } from './routes/plugin-run';
import { pluginsRouter } from './routes/plugins';
import { runnerRouter } from './routes/runner';
import { handleScheduled } from './scheduled';
import { registerWebhookEventDocs, webhooks } from './webhooks/routes';

export type { Env } from './env';

const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });

// Request id: echoed from a sane incoming X-Request-Id, else generated; returned on every response.
app.use('*', async (c, next) => {
  const incoming = c.req.header('x-request-id');
  c.set('requestId', incoming && /^[\w.-]{1,100}$/.test(incoming) ? incoming : newId('req'));
  c.set('db', drizzle(c.env.DB, { schema }));
  await next();
  c.header('x-request-id', c.get('requestId'));
});

// Auth: user routes take API keys; /v1/runner/* authenticates in its own router; a few are open.
const OPEN_PATHS = new Set(['/v1/health', '/v1/openapi.json', '/v1/bootstrap']);
app.use('/v1/*', async (c, next) => {
  if (OPEN_PATHS.has(c.req.path) || c.req.path.startsWith('/v1/runner/')) return next();
  return requireUser(c, next);
});
// JSON bodies: size (413), depth, lengths and forbidden keys checked before any route runs.
app.use('/v1/*', jsonBodyLimits);

app.get('/v1/health', (c) => c.json({ ok: true }));
app.route('/v1', bootstrap);
app.route('/v1', account);
app.route('/v1', artifactsRouter);
app.route('/v1', budgetsRouter);
app.route('/v1', jobsRouter);
app.route('/v1', pluginRunRouter);
app.route('/v1', pluginsRouter);
app.route('/v1/runner', runnerRouter);
app.route('/v1/webhooks', webhooks);
registerWebhookEventDocs(app.openAPIRegistry);
// OpenAI-compatible fine-tuning routes (docs/openai-migration.md): they forward to /v1 in-process.
app.route(
  '/openai/v1',
  openaiRouter((request, env, ctx) => app.fetch(request, env, ctx)),
);

app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
  type: 'http',
  scheme: 'bearer',
  description: 'API key (cgrpo_sk_…) on user routes; runner token (cgrpo_rt_…) on /v1/runner/*',
});
const OPENAPI_CONFIG = {
  openapi: '3.1.0',
  info: {
    title: 'cgrpo API',
    version: '0.1.0',
    description: 'Critique-GRPO fine-tuning service: jobs, datasets, plugins, runners.',
  },
  servers: [{ url: '/' }],
};
let openApiDocument: Record<string, unknown> | undefined;
app.get('/v1/openapi.json', (c) => {
  // Generated once per isolate, then completed (operationIds, security, shared error responses).
  openApiDocument ??= finishOpenApiDocument(
    app.getOpenAPI31Document(OPENAPI_CONFIG) as unknown as Record<string, unknown>,
    z.toJSONSchema(ErrorBodySchema, { io: 'output' }) as Record<string, unknown>,
  );
  return c.json(openApiDocument);
});
app.get('/docs', (c) => c.html(DOCS_PAGE));
// Everything outside /v1 is the dashboard (api/public, served by the ASSETS binding).
app.get('*', async (c, next) => {
  if (c.req.path.startsWith('/v1/') || c.req.path.startsWith('/openai/') || !c.env.ASSETS) return next();
  const asset = await c.env.ASSETS.fetch(c.req.raw);
  // a path that is no file of the dashboard gets the API's JSON 404, not an empty body
  if (asset.status === 404) return next();
  return asset;
});

app.notFound((c) =>
  c.json(errorBody(c, new ApiError(404, 'not_found', `no route ${c.req.method} ${c.req.path}`)), 404),
);
app.onError((err, c) => {
  if (err instanceof HTTPException && !(err instanceof ApiError)) {
    const status = err.status;
    const code =
      status === 415 ? 'unsupported_media_type' : status === 400 ? 'invalid_request' : 'http_error';
    const message =
      status === 415
        ? 'send the body as application/json (or the media type the route documents)'
        : err.message || 'bad request';
    const fields = [{ path: 'body', message: status === 415 ? 'unsupported media type' : message }];
    return c.json(errorBody(c, new ApiError(status as 400, code, message, fields)), status as 400);
  }
  return handleError(err, c);
});

export { app };

export default {
  fetch: app.fetch,
  queue: (batch, env, ctx) => handleQueueBatch(batch, env, ctx),
  scheduled: (controller, env, ctx) => handleScheduled(controller, env, ctx),
} satisfies ExportedHandler<Env>;
