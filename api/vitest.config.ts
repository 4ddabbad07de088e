import path from 'node:path';
import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-plugin';
import { defineConfig } from 'vitest/config';

const root = path.resolve(import.meta.dirname, '..');

export default defineConfig({
  plugins: [
    cloudflareTest(async () => ({
      wrangler: { configPath: path.join(root, 'wrangler.toml') },
      miniflare: {
        bindings: {
          TEST_MIGRATIONS: await readD1Migrations(path.join(root, 'migrations')),
          // Webhook retries 1 s apart (5 attempts) instead of hours: see api/src/webhooks/schedule.ts.
          WEBHOOKS_RETRY_SCHEDULE: '1,1,1,1',
        },
      },
    })),
  ],
  test: {
    name: 'api',
    include: ['test/**/*.test.ts'],
    // Applies the D1 migrations before each file (idempotent).
    setupFiles: ['test/setup.ts'],
    // Each test makes many real requests into workerd; on a loaded 2-core CI box 5 s is too tight.
    testTimeout: 30_000,
    // A real HTTP receiver on 127.0.0.1 for webhook deliveries (port via inject('webhookReceiverPort')).
    // The OpenAPI checkers (@seriousme/openapi-schema-validator, @redocly/cli) on 127.0.0.1 (openapi.test.ts).
    globalSetup: ['test/webhooks.receiver.ts', 'test/openapi.linter.ts'],
  },
});
