import { applyD1Migrations, env } from 'cloudflare:test';

// Every API test file starts from a migrated local D1 (applying is idempotent).
const testEnv = env as unknown as {
  DB: D1Database;
  TEST_MIGRATIONS: Parameters<typeof applyD1Migrations>[1];
};
await applyD1Migrations(testEnv.DB, testEnv.TEST_MIGRATIONS);
