import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    name: 'plugins',
    include: ['**/*.test.ts'],
    exclude: ['**/node_modules/**'],
    testTimeout: 60_000,
    // isolated-vm (the sandbox's V8 engine) needs it on Node >= 20
    execArgv: ['--no-node-snapshot'],
  },
});
