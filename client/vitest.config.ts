import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    name: 'client',
    include: ['**/*.test.ts'],
    exclude: ['**/node_modules/**'],
    testTimeout: 60_000,
    // isolated-vm (the plugin sandbox's V8 engine) needs it on Node >= 20
    execArgv: ['--no-node-snapshot'],
  },
});
