import { defineConfig } from 'vitest/config';

// One `vitest run` covers every workspace: the API project runs inside workerd
// (@cloudflare/vitest-plugin), the others on Node.
export default defineConfig({
  test: {
    projects: ['api/vitest.config.ts', 'contract', 'gpu-runner', 'plugins', 'client'],
  },
});
