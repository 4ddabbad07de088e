import { Hono } from 'hono';

export interface Env {
  DB: D1Database;
  ARTIFACTS: R2Bucket;
  JOBS_QUEUE: Queue;
  ENVIRONMENT: string;
}

const app = new Hono<{ Bindings: Env }>();
app.get('/v1/health', (c) => c.json({ ok: true }));

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<Env>;
