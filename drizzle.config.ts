import { defineConfig } from 'drizzle-kit';

// Migrations are generated offline from both schema files and applied with wrangler
// (`npm run db:migrate:local`, or `wrangler d1 migrations apply DB --remote` when deployed).
export default defineConfig({
  dialect: 'sqlite',
  schema: ['./api/src/db/schema.ts', './api/src/db/webhooks-schema.ts'],
  out: './migrations',
});
