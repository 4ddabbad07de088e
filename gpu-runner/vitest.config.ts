import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    name: 'gpu-runner',
    include: ['**/*.test.ts'],
    exclude: ['**/node_modules/**'],
    testTimeout: 60_000,
  },
});
